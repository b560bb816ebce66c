//go:build !failpoints

// Package failpoint names the places where the crash tests kill slipway.
// In a normal build Hit does nothing and costs nothing. Built with
// `-tags failpoints` (the tests' binary only), Hit(name) kills the process
// with SIGKILL when SLIPWAY_FAILPOINT lists name, so that a test can stop
// slipway exactly between two steps and check what recovery makes of it.
package failpoint

// Hit marks a place a crash test can stop slipway at.
func Hit(string) {}
