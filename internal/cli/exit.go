package cli

import (
	"errors"
	"strconv"

	"github.com/slipway-dev/slipway/internal/exitcode"
)

// Exit codes the CLI uses by name.
const (
	ExitFailedCode = exitcode.Failed
	ExitUsageCode  = exitcode.Usage
	ExitLockedCode = exitcode.Locked
)

// usageError marks a usage error (exit 2).
type usageError = exitcode.UsageError

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	var r remoteExit
	if asRemote(err, &r) {
		return r.code
	}
	var s exitStatus
	if errors.As(err, &s) {
		return int(s)
	}
	return exitcode.Of(err)
}

// exitStatus is an exit code a command chose itself, with nothing more to
// print: it has said what it had to.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// exitError returns an error that makes slipway exit with code, silently.
func exitError(code int) error { return reported{exitStatus(code)} }
