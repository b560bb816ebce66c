// Package exitcode maps errors to slipway's documented exit codes (docs/deploy.md),
// in this one place, for the CLI and for results the agent reports.
package exitcode

import (
	"context"
	"errors"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/lock"
)

// The exit codes.
const (
	OK             = 0 // done, or nothing to do
	Failed         = 1 // the deploy failed and was rolled back
	Usage          = 2 // usage or configuration error
	Locked         = 3 // another deploy holds the lock, or deploys are frozen
	RollbackFailed = 4 // the rollback failed: the service is not healthy
	Interrupted    = 5 // interrupted by a signal
)

// ErrUsage marks a usage error (bad flags, arguments or settings).
var ErrUsage = errors.New("usage")

// UsageError wraps err as a usage error.
type UsageError struct{ Err error }

func (u UsageError) Error() string        { return u.Err.Error() }
func (u UsageError) Unwrap() error        { return u.Err }
func (u UsageError) Is(target error) bool { return target == ErrUsage }

// Of returns the exit code for err.
func Of(err error) int {
	var cfgErr *config.Error
	switch {
	case err == nil:
		return OK
	case errors.Is(err, ErrUsage), errors.As(err, &cfgErr), errors.Is(err, deploy.ErrNothingToRestore), errors.Is(err, deploy.ErrUnknownService), errors.Is(err, deploy.ErrEnvNotPrivate):
		return Usage
	case errors.Is(err, lock.ErrLocked):
		return Locked
	case errors.Is(err, deploy.ErrRollbackFailed):
		return RollbackFailed
	case errors.Is(err, deploy.ErrInterrupted), errors.Is(err, context.Canceled):
		return Interrupted
	default:
		return Failed
	}
}
