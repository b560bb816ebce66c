package config

import (
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// refPattern matches one ${NAME} reference. No other form ($NAME, ${NAME:-x})
// is expanded; they stay as written.
var refPattern = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// lookupFunc returns the value of an environment variable.
type lookupFunc func(name string) (string, bool)

// missingRef is a reference that expanded to "": its name and byte offset.
type missingRef struct {
	name string
	off  int
}

// expandString replaces every ${NAME} in s. A name without a non-empty value
// becomes "" and is returned in missing.
func expandString(s string, lookup lookupFunc) (out string, missing []missingRef) {
	locs := refPattern.FindAllStringSubmatchIndex(s, -1)
	if locs == nil {
		return s, nil
	}
	var b strings.Builder
	prev := 0
	for _, loc := range locs {
		b.WriteString(s[prev:loc[0]])
		name := s[loc[2]:loc[3]]
		if v, ok := lookup(name); ok && v != "" {
			b.WriteString(v)
		} else {
			missing = append(missing, missingRef{name: name, off: loc[0]})
		}
		prev = loc[1]
	}
	b.WriteString(s[prev:])
	return b.String(), missing
}

// isCommand reports whether the value at p is a command (a step's run, a
// service's command): those keep their ${VAR} references, which the command's
// own environment expands when it runs.
func isCommand(p keyPath) bool {
	if k := p.last(); k != "run" && k != "command" {
		return false
	}
	t := typeAt(p.parent())
	return t != nil && t.Kind() == reflect.Struct
}

// locatesEnv reports whether the value at p is needed to find the env files
// (app, root, env_files): those expand from the process environment only.
func locatesEnv(p keyPath) bool {
	switch {
	case len(p) == 1:
		return p[0] == "app" || p[0] == "root"
	case len(p) == 2:
		return p[0] == "env_files"
	}
	return false
}

// expandTree expands ${VAR} in every string value of the document in place,
// except commands. Values needed to locate the env files look only at the
// process environment; every other value looks at the process environment,
// then the env files. References without a value are returned, and the paths
// of the values that hold them.
func expandTree(ix *index, body ast.Node, process, full lookupFunc) (unset []VarRef, at map[string]bool) {
	at = make(map[string]bool)
	_ = walk(nil, nil, body, func(p keyPath, _ *token.Token, n ast.Node) error {
		var s *ast.StringNode
		switch n := n.(type) {
		case *ast.StringNode:
			s = n
		case *ast.LiteralNode:
			s = n.Value
		}
		if s == nil || isCommand(p) {
			return nil
		}
		lookup := full
		if locatesEnv(p) {
			lookup = process
		}
		orig := s.Value
		out, missing := expandString(orig, lookup)
		s.Value = out
		for _, m := range missing {
			unset = append(unset, VarRef{Name: m.name, Pos: refPos(ix, n, orig, m.off)})
			at[p.String()] = true
		}
		return nil
	})
	return unset, at
}

// refPos is the position of the reference at byte off in the scalar n: exact
// for a plain scalar on one line, else where the scalar starts.
func refPos(ix *index, n ast.Node, value string, off int) Pos {
	tk := n.GetToken()
	pos := ix.pos(tk)
	if _, ok := n.(*ast.StringNode); !ok || tk == nil || tk.Type != token.StringType {
		return pos
	}
	if strings.ContainsAny(strings.TrimSpace(tk.Origin), "\n\r") {
		return pos // folded over several lines
	}
	pos.Col += utf8.RuneCountInString(value[:off])
	return pos
}
