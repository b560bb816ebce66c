// Command slipway deploys a git-backed app onto Linux hosts.
package main

import (
	"os"

	"github.com/slipway-dev/slipway/internal/cli"
)

func main() { os.Exit(cli.Main()) }
