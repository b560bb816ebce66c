package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// keyPath is where a value sits in the document: mapping keys and "[i]"
// sequence indexes, printed as services.backend.port or build[0].run.
type keyPath []string

func (p keyPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 && !isIndex(s) {
			b.WriteByte('.')
		}
		if !isIndex(s) && !plainKey.MatchString(s) {
			s = strconv.Quote(s)
		}
		b.WriteString(s)
	}
	return b.String()
}

// plainKey is a key printed in a path without quotes.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (p keyPath) key(k string) keyPath { return append(p[:len(p):len(p)], k) }

func (p keyPath) index(i int) keyPath { return append(p[:len(p):len(p)], "["+strconv.Itoa(i)+"]") }

func (p keyPath) parent() keyPath {
	if len(p) == 0 {
		return p
	}
	return p[:len(p)-1]
}

func (p keyPath) last() string {
	if len(p) == 0 {
		return ""
	}
	return p[len(p)-1]
}

func isIndex(seg string) bool { return strings.HasPrefix(seg, "[") }

// visitFunc is called for every value in the document, parents before
// children; key is the token of the mapping key whose value n is, nil for
// sequence items and the document itself.
type visitFunc func(p keyPath, key *token.Token, n ast.Node) error

// walk visits n and everything below it. Alias nodes are visited but not
// followed: the anchored value is visited where it is defined. The keys of a
// merged mapping (<<: *base) are visited as if written in place.
func walk(p keyPath, key *token.Token, n ast.Node, fn visitFunc) error {
	if n == nil {
		return nil
	}
	if err := fn(p, key, n); err != nil {
		return err
	}
	switch n := n.(type) {
	case *ast.AnchorNode:
		return walk(p, key, n.Value, fn)
	case *ast.TagNode:
		return walk(p, key, n.Value, fn)
	case *ast.MappingNode:
		for _, mv := range n.Values {
			if err := walkPair(p, mv, fn); err != nil {
				return err
			}
		}
	case *ast.MappingValueNode:
		return walkPair(p, n, fn)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			if err := walk(p.index(i), nil, v, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func walkPair(p keyPath, mv *ast.MappingValueNode, fn visitFunc) error {
	if mv.Key == nil {
		return nil
	}
	if mv.Key.IsMergeKey() {
		return walk(p, nil, mv.Value, fn)
	}
	return walk(p.key(keyName(mv.Key)), mv.Key.GetToken(), mv.Value, fn)
}

func keyName(k ast.MapKeyNode) string {
	if s, ok := scalar(k); ok {
		return s
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

// scalar returns the text of a scalar node (after ${VAR} expansion, if it
// has run), looking through anchors and tags.
func scalar(n ast.Node) (string, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		return n.Value.Value, true
	case *ast.AnchorNode:
		return scalar(n.Value)
	case *ast.TagNode:
		return scalar(n.Value)
	case *ast.MappingKeyNode:
		return scalar(n.Value)
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return n.GetToken().Value, true
	}
	return "", false
}

// entry is a value found in the document: its node and the key it is under.
type entry struct {
	key  *token.Token
	node ast.Node
}

// index finds the place of every value in one document, for error messages.
type index struct {
	file    string
	entries map[string]entry         // by path.String(), first occurrence wins
	values  map[*token.Token]keyPath // token of a value node -> its path
	keys    map[*token.Token]keyPath // token of a mapping key -> the path of its value
}

func newIndex(file string, body ast.Node) *index {
	ix := &index{
		file:    file,
		entries: make(map[string]entry),
		values:  make(map[*token.Token]keyPath),
		keys:    make(map[*token.Token]keyPath),
	}
	_ = walk(nil, nil, body, func(p keyPath, key *token.Token, n ast.Node) error {
		s := p.String()
		if _, ok := ix.entries[s]; !ok {
			ix.entries[s] = entry{key: key, node: n}
		}
		if tk := n.GetToken(); tk != nil {
			if _, ok := ix.values[tk]; !ok {
				ix.values[tk] = p
			}
		}
		if key != nil {
			ix.keys[key] = p
		}
		return nil
	})
	return ix
}

// has reports whether the document sets the value at p.
func (ix *index) has(p string) bool {
	e, ok := ix.entries[p]
	return ok && e.node.Type() != ast.NullType
}

// node returns the value at p, or nil.
func (ix *index) node(p string) ast.Node {
	return ix.entries[p].node
}

// valuePos is where the value at p (or its nearest written ancestor) starts.
func (ix *index) valuePos(p keyPath) Pos {
	for ; ; p = p.parent() {
		if e, ok := ix.entries[p.String()]; ok && len(p) > 0 {
			return ix.pos(nodeToken(e.node))
		}
		if len(p) == 0 {
			return Pos{File: ix.file, Line: 1, Col: 1}
		}
	}
}

// keyPos is where the key of the value at p is written, or where the value
// starts when it has no key (a sequence item).
func (ix *index) keyPos(p keyPath) Pos {
	if e, ok := ix.entries[p.String()]; ok && e.key != nil {
		return ix.pos(e.key)
	}
	return ix.valuePos(p)
}

func (ix *index) pos(tk *token.Token) Pos {
	if tk == nil || tk.Position == nil {
		return Pos{File: ix.file, Line: 1, Col: 1}
	}
	return Pos{File: ix.file, Line: tk.Position.Line, Col: tk.Position.Column}
}

// errorf returns an error at the value at p, its message prefixed with p.
func (ix *index) errorf(p keyPath, format string, args ...any) *Error {
	return &Error{Pos: ix.valuePos(p), Msg: prefixed(p, format, args...)}
}

// keyErrorf returns an error at the key of the value at p.
func (ix *index) keyErrorf(p keyPath, format string, args ...any) *Error {
	return &Error{Pos: ix.keyPos(p), Msg: prefixed(p, format, args...)}
}

func prefixed(p keyPath, format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	if len(p) == 0 {
		return msg
	}
	return p.String() + ": " + msg
}

// nodeToken is the token a reader would point at for n: the first key of a
// block mapping rather than its first colon.
func nodeToken(n ast.Node) *token.Token {
	switch n := n.(type) {
	case *ast.MappingNode:
		if !n.IsFlowStyle && len(n.Values) > 0 && n.Values[0].Key != nil {
			return n.Values[0].Key.GetToken()
		}
	case *ast.MappingValueNode:
		if n.Key != nil {
			return n.Key.GetToken()
		}
	}
	return n.GetToken()
}

// typeAt returns the Go type that the value at p decodes into (pointers
// removed), or nil when p names no field.
func typeAt(p keyPath) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, seg := range p {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case t.Kind() == reflect.Slice && isIndex(seg):
			t = t.Elem()
		case t.Kind() == reflect.Map:
			t = t.Elem()
		case t.Kind() == reflect.Struct:
			f, ok := fieldByKey(t, seg)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// fieldByKey finds the struct field written as key in YAML.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for _, f := range reflect.VisibleFields(t) {
		if yamlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf lists the YAML keys of struct type t, in declaration order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for _, f := range reflect.VisibleFields(t) {
		if k := yamlKey(f); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || name == "" {
		return ""
	}
	return name
}
