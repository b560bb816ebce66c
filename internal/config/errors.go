package config

import (
	"errors"
	"fmt"
)

// ErrNotFound is wrapped by Find when no config file exists in any of the
// places it looks.
var ErrNotFound = errors.New("no slipway.yml found")

// Error is a problem in a config file at a known place. Its text is one line,
// "FILE:LINE:COL: message", and the message says what to change.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// String returns "file:line:col"; without a line it is just the file.
func (p Pos) String() string {
	if p.Line <= 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}
