package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// reported is an error the command already explained on stderr.
type reported struct{ err error }

func (r reported) Error() string { return r.err.Error() }
func (r reported) Unwrap() error { return r.err }

// Main runs slipway with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot()
	err := root.ExecuteContext(ctx)
	if err != nil && !errors.As(err, new(reported)) {
		fmt.Fprintf(os.Stderr, "slipway: %v\n", err)
	}
	return ExitCode(err)
}
