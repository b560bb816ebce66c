package config

import (
	"fmt"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// String formats d like time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a Go duration string ("90s", "5m"); a bare 0 is also
// accepted, meaning off. Negative durations are refused.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	switch v := unwrap(n).(type) {
	case *ast.IntegerNode:
		if fmt.Sprint(v.Value) == "0" {
			*d = 0
			return nil
		}
		return &nodeError{node: n, msg: fmt.Sprintf("%s is not a duration: add a unit (examples: 90s, 5m)", v.GetToken().Value)}
	case *ast.StringNode, *ast.LiteralNode:
		s, _ := scalar(v)
		td, err := time.ParseDuration(s)
		if err != nil {
			return &nodeError{node: n, msg: fmt.Sprintf("%q is not a duration (examples: 90s, 5m)", s)}
		}
		if td < 0 {
			return &nodeError{node: n, msg: fmt.Sprintf("%q must not be negative", s)}
		}
		*d = Duration(td)
		return nil
	default:
		return &nodeError{node: n, msg: fmt.Sprintf("expected a duration (examples: 90s, 5m), got %s", nodeKind(n))}
	}
}

// nodeError is a problem with one node found while decoding; Load turns it
// into an *Error that names the node's path and position.
type nodeError struct {
	node ast.Node
	msg  string
}

func (e *nodeError) Error() string { return e.msg }

// unwrap looks through anchors and tags.
func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		default:
			return n
		}
	}
}

// nodeKind names what kind of YAML value n is, for messages.
func nodeKind(n ast.Node) string {
	switch unwrap(n).(type) {
	case *ast.StringNode, *ast.LiteralNode:
		return "string"
	case *ast.IntegerNode:
		return "integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "number"
	case *ast.BoolNode:
		return "boolean"
	case *ast.NullNode, nil:
		return "nothing"
	case *ast.SequenceNode:
		return "list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "mapping"
	}
	return n.Type().YAMLName()
}
