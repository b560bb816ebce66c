package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/proxy"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/sdnotify"
)

func newProxyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy [status | pause SERVICE | resume SERVICE]",
		Short: "Run the zero-downtime proxy of the services with proxy: (deploys start it when needed)",
		Long: `Without a subcommand, runs the proxy: it listens on each proxied service's
proxy.listen and sends the traffic to the instance the last deploy switched
to. Routes are kept in run/proxy.json and restored at start; deploys talk to
it over run/proxy.sock. Deploys start it by themselves (a process of its own,
or the slipway-<app>-proxy unit under systemd), so it outlives the agent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			l := release.Layout{Root: cfg.Root}
			if err := l.Ensure(); err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("app", cfg.App, "component", "proxy")
			s := &proxy.Server{StatePath: l.ProxyState(), Log: log}
			if err := s.Restore(); err != nil {
				return err
			}
			// Its own signal handling: SIGTERM drains, whatever the parent does.
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() {
				// The control socket is up almost at once; systemd hears of it.
				c := proxy.NewClient(l.ProxySocket())
				for c.Ping(ctx) != nil && ctx.Err() == nil {
					time.Sleep(10 * time.Millisecond)
				}
				sdnotify.Ready()
				log.Info("proxy ready", "socket", l.ProxySocket())
			}()
			err = s.Serve(ctx, l.ProxySocket(), 30*time.Second)
			sdnotify.Stopping()
			return err
		},
	}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show each route: its listener, the instance it serves, its health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.proxyClient()
			if err != nil {
				return err
			}
			rs, err := c.Routes(cmd.Context())
			if err != nil {
				// Say what that means rather than the dial error alone.
				fmt.Fprintf(g.stderr, "the proxy is down: it does not answer on %s (%v); `slipway deploy` starts it again, `slipway status` shows what runs\n", c.Sock, err)
				return exitError(exitcode.RollbackFailed)
			}
			if asJSON {
				printJSON(g, rs)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tLISTEN\tINSTANCE\tRELEASE\tHEALTH\tIN FLIGHT\tPAUSED")
			for _, r := range rs {
				health := "ok"
				if !r.Healthy {
					health = "UNHEALTHY: " + r.Problem
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%v\n", r.Service, r.Listen, orDash(r.Backend), orDash(r.Release), health, r.InFlight, r.Paused)
			}
			return tw.Flush()
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	var limit time.Duration
	pause := &cobra.Command{
		Use:   "pause SERVICE [--for 30s]",
		Short: "Hold the service's new requests (e.g. during a migration) until resume, or --for passes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.proxyClient()
			if err != nil {
				return err
			}
			return c.Pause(cmd.Context(), args[0], limit)
		},
	}
	pause.Flags().DurationVar(&limit, "for", 30*time.Second, "resume by itself after this long")
	resume := &cobra.Command{
		Use:   "resume SERVICE",
		Short: "Let held requests through",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.proxyClient()
			if err != nil {
				return err
			}
			return c.Resume(cmd.Context(), args[0])
		},
	}
	cmd.AddCommand(status, pause, resume)
	return cmd
}

func (g *globals) proxyClient() (*proxy.Client, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return proxy.NewClient(release.Layout{Root: cfg.Root}.ProxySocket()), nil
}
