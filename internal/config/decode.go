package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

var durationType = reflect.TypeFor[Duration]()

// decode decodes the document into cfg in goccy/go-yaml's strict mode and
// turns whatever it refuses into an *Error.
func decode(ix *index, body ast.Node, cfg *Config) (err error) {
	if err := precheck(ix, body); err != nil {
		return err
	}
	// The decoder has panicked on odd input before; a config file must never
	// crash the CLI.
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Pos: ix.pos(nil), Msg: fmt.Sprintf("the YAML decoder failed on this file (%v); please report it", r)}
		}
	}()
	if err := yaml.NodeToValue(body, cfg, yaml.Strict()); err != nil {
		return ix.translate(err)
	}
	return nil
}

// precheck refuses what the decoder would take silently or badly: YAML tags
// (!!str, !custom), which slipway.yml has no use for, and a fractional number
// where an integer is expected, which would be truncated.
func precheck(ix *index, body ast.Node) error {
	return walk(nil, nil, body, func(p keyPath, _ *token.Token, n ast.Node) error {
		switch n := n.(type) {
		case *ast.TagNode:
			return &Error{Pos: ix.pos(n.Start), Msg: prefixed(p, "YAML tags such as %s are not supported; write the value plainly (quote it to make it a string)", n.Start.Value)}
		case *ast.FloatNode:
			if t := typeAt(p); t != nil && isInt(t) {
				return ix.errorf(p, "expected an integer, got number")
			}
		}
		return nil
	})
}

// translate turns an error from the YAML decoder into a one-line *Error.
func (ix *index) translate(err error) *Error {
	var (
		ne  *nodeError
		uf  *yaml.UnknownFieldError
		te  *yaml.TypeError
		of  *yaml.OverflowError
		ut  *yaml.UnexpectedNodeTypeError
		yer yaml.Error
	)
	switch {
	case errors.As(err, &ne):
		p := ix.values[ne.node.GetToken()]
		return &Error{Pos: ix.pos(nodeToken(ne.node)), Msg: prefixed(p, "%s", ne.msg)}
	case errors.As(err, &uf):
		return ix.unknownKey(uf.Token)
	case errors.As(err, &te):
		p, pos := ix.at(te.Token)
		return &Error{Pos: pos, Msg: prefixed(p, "expected %s, got %s", describe(te.DstType), srcKind(te.SrcType))}
	case errors.As(err, &of):
		p, pos := ix.at(of.Token)
		return &Error{Pos: pos, Msg: prefixed(p, "%s is out of range", of.SrcNum)}
	case errors.As(err, &ut):
		p, pos := ix.at(ut.Token)
		return &Error{Pos: pos, Msg: prefixed(p, "expected %s, got %s", describeNode(ut.Expected), kindName(ut.Actual))}
	case errors.As(err, &yer):
		return &Error{Pos: ix.pos(yer.GetToken()), Msg: syntaxMessage(yer.GetMessage())}
	}
	return &Error{Pos: ix.pos(nil), Msg: err.Error()}
}

// at returns the path and position of the value whose token is tk: the
// value itself, or its key when it is a block mapping or list.
func (ix *index) at(tk *token.Token) (keyPath, Pos) {
	p, ok := ix.values[tk]
	if !ok {
		return nil, ix.pos(tk)
	}
	switch n := unwrap(ix.node(p.String())).(type) {
	case *ast.MappingNode:
		if !n.IsFlowStyle {
			return p, ix.keyPos(p)
		}
	case *ast.SequenceNode:
		if !n.IsFlowStyle {
			return p, ix.keyPos(p)
		}
	}
	return p, ix.valuePos(p)
}

// unknownKey explains a key that no field has, with the closest known key.
func (ix *index) unknownKey(tk *token.Token) *Error {
	name := ""
	if tk != nil {
		name = tk.Value
	}
	var parent keyPath
	if p, ok := ix.keys[tk]; ok {
		parent, name = p.parent(), p.last()
	}
	msg := fmt.Sprintf("unknown key %q", name)
	if t := typeAt(parent); t != nil && t.Kind() == reflect.Struct {
		known := keysOf(t)
		if s := suggest(name, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else {
			msg += fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
		}
	}
	return &Error{Pos: ix.pos(tk), Msg: prefixed(parent, "%s", msg)}
}

// positionInMessage matches goccy's "[line:col]" references.
var positionInMessage = regexp.MustCompile(`\[(\d+):(\d+)\]`)

// syntaxMessage rewrites goccy's "[3:1]" into "line 3".
func syntaxMessage(msg string) string {
	return positionInMessage.ReplaceAllString(msg, "line $1")
}

func isInt(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return t != durationType
	}
	return false
}

// describe says what a value of Go type t looks like in YAML.
func describe(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == nil:
		return "a value"
	case t == durationType:
		return "a duration (examples: 90s, 5m)"
	case isInt(t):
		return "an integer"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// srcKind names the YAML kind of a value the decoder produced as type t.
func srcKind(t reflect.Type) string {
	if t == nil {
		return "nothing"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "mapping"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	if isInt(t) {
		return "integer"
	}
	return t.String()
}

func describeNode(t ast.NodeType) string {
	switch t {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	}
	return "a " + kindName(t)
}

func kindName(t ast.NodeType) string {
	switch t {
	case ast.MappingType, ast.MappingValueType:
		return "mapping"
	case ast.SequenceType:
		return "list"
	case ast.NullType:
		return "nothing"
	case ast.BoolType:
		return "boolean"
	case ast.FloatType:
		return "number"
	case ast.IntegerType:
		return "integer"
	case ast.StringType, ast.LiteralType:
		return "string"
	}
	return t.YAMLName()
}

// suggest returns the candidate closest to name when it is a plausible typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		d := editDistance(strings.ToLower(name), c)
		if d < bestDist && d <= len(c)/2 {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
