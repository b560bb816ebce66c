package cli

import "github.com/slipway-dev/slipway/internal/exitcode"

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
	return exitcode.Of(err)
}
