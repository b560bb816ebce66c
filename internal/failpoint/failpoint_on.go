//go:build failpoints

package failpoint

import (
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Env lists the failpoints to crash at, separated by commas.
const Env = "SLIPWAY_FAILPOINT"

var points = sync.OnceValue(func() []string {
	return strings.Split(os.Getenv(Env), ",")
})

// Hit kills the process with SIGKILL when name is one of Env's points.
func Hit(name string) {
	if slices.Contains(points(), name) {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
