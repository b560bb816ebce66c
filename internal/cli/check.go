package cli

import (
	"fmt"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/hostcheck"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/service"
)

func newCheckCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the config and the host: git, user, dirs and modes, env files, required env, ports, disk",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			mgr, err := managerFor(cfg, release.Layout{Root: cfg.Root})
			if err != nil {
				return err
			}
			ctx := signalContext(cmd)
			ours := func(port, pid int) bool {
				for _, name := range cfg.ServiceNames() {
					s := cfg.Services[name]
					if s.Port != port {
						continue
					}
					st, err := mgr.Status(ctx, service.Spec{App: cfg.App, Name: name, Port: port, Unit: s.Unit})
					if err == nil && st.Running {
						pg, _ := syscall.Getpgid(pid)
						return pid == st.PID || pg == st.PID
					}
				}
				return false
			}
			findings := hostcheck.Run(ctx, cfg, ours)
			failed := 0
			for _, f := range findings {
				if f.Level == hostcheck.Fail {
					failed++
				}
			}
			if asJSON {
				printJSON(g, findings)
			} else {
				for _, f := range findings {
					fmt.Fprintf(g.stdout, "%-4s  %-7s %s\n", f.Level, f.Check, f.What)
					if f.Fix != "" && f.Level != hostcheck.OK {
						fmt.Fprintf(g.stdout, "               fix: %s\n", f.Fix)
					}
				}
			}
			if failed > 0 {
				return reported{fmt.Errorf("%d checks failed", failed)}
			}
			if !asJSON {
				fmt.Fprintln(g.stdout, "all checks passed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print findings as JSON")
	return cmd
}
