package cli

import (
	"errors"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/lock"
)

// Exit codes (SPEC §5), mapped from errors in this one place.
const (
	ExitOK             = 0 // done, or nothing to do
	ExitFailed         = 1 // the deploy failed and was rolled back
	ExitUsage          = 2 // usage or configuration error
	ExitLocked         = 3 // another deploy holds the lock, or deploys are frozen
	ExitRollbackFailed = 4 // the rollback failed: the service is not healthy
	ExitInterrupted    = 5 // interrupted by a signal
)

// ErrUsage marks a usage error (bad flags or arguments).
var ErrUsage = errors.New("usage")

// usageError wraps err as a usage error.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }
func (u usageError) Is(t error) bool {
	return t == ErrUsage
}

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	var cfgErr *config.Error
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage), errors.As(err, &cfgErr):
		return ExitUsage
	case errors.Is(err, lock.ErrLocked):
		return ExitLocked
	case errors.Is(err, deploy.ErrRollbackFailed):
		return ExitRollbackFailed
	case errors.Is(err, deploy.ErrInterrupted):
		return ExitInterrupted
	default:
		return ExitFailed
	}
}
