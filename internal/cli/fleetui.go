package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/api"
	"github.com/slipway-dev/slipway/internal/fleet"
	"github.com/slipway-dev/slipway/internal/web"
)

func newFleetUICmd(g *globals, ff *fleetFlags) *cobra.Command {
	var listen, repo string
	var refresh time.Duration
	var push bool
	rf := &rolloutFlags{}
	cmd := &cobra.Command{
		Use:   "ui [--listen 127.0.0.1:7480] [--refresh 15s] [rollout flags]",
		Short: "Serve the fleet's dashboard here: the hosts' grid with drift, rollouts as they run, halt and revert",
		Long: `ui serves the fleet's screens on this machine until interrupted. You
sign in with $SLIPWAY_UI_TOKEN, or, without it, with the random token
written to $SLIPWAY_HOME/fleet/APP/ui.token (mode 0600) at start. The grid shows the
hosts' status as last gathered, every --refresh and after each rollout.
Rollouts started from the page run here, with the rollout flags given to ui
(and the fleet section's defaults).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if refresh < time.Second {
				return usageError{Err: errors.New("--refresh: at least 1s")}
			}
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			opts, err := rf.options(cmd, a.f.F)
			if err != nil {
				return err
			}
			opts.Kind, opts.Push, opts.Repo = fleet.KindDeploy, push, cmp.Or(repo, a.cfg.Repo)
			token, where, err := uiToken(a.home)
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return usageError{Err: fmt.Errorf("--listen: %w", err)}
			}
			ctx := signalContext(cmd)
			ui := &fleetUI{a: a, opts: opts, ctx: ctx, wake: make(chan struct{}, 1), running: map[int64]chan string{}}
			pages := web.New(a.cfg.App, []byte(token), nil)
			pages.Fleet = ui
			srv := api.HTTPServer(pages.Handler())
			go ui.gather(ctx, refresh)
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			fmt.Fprintf(g.stderr, "fleet ui: http://%s/ (%d hosts); sign in with the token %s\n", l.Addr(), len(a.hosts), where)
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			ui.wg.Wait() // a rollout in flight finishes its hosts and records how it ended
			return nil
		},
	}
	rf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:7480", "the address to serve on")
	f.DurationVar(&refresh, "refresh", 15*time.Second, "how often the hosts' status is gathered")
	f.BoolVar(&push, "push", false, "rollouts push the commit into each host's mirror over ssh")
	f.StringVar(&repo, "repo", "", "the local repository commits are resolved in (and pushed from); default: the config's repo")
	return cmd
}

// uiToken is $SLIPWAY_UI_TOKEN, or a new random token written to a 0600
// file under home; where says which, for the operator.
func uiToken(home string) (token, where string, err error) {
	if t := os.Getenv("SLIPWAY_UI_TOKEN"); t != "" {
		if len(t) < 16 {
			return "", "", usageError{Err: errors.New("SLIPWAY_UI_TOKEN: at least 16 characters")}
		}
		return t, "in $SLIPWAY_UI_TOKEN", nil
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	path := filepath.Join(home, "ui.token")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(path+".tmp", []byte(token+"\n"), 0o600); err != nil {
		return "", "", err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return "", "", err
	}
	return token, "in " + path, nil
}

// fleetUI is web.FleetBackend over the operator's fleet.
type fleetUI struct {
	a    *fleetApp
	opts fleet.RolloutOptions
	ctx  context.Context // the command's: a signal stops the rollouts' new hosts
	wg   sync.WaitGroup
	wake chan struct{} // a rollout ended: gather again now

	mu      sync.Mutex
	grid    []fleet.HostStatus
	asOf    time.Time
	running map[int64]chan string // the rollouts this process runs, and their stop
}

// gather asks every host for its status every refresh, and after each
// rollout.
func (u *fleetUI) gather(ctx context.Context, refresh time.Duration) {
	for {
		sts := u.a.f.StatusAll(ctx, u.a.hosts)
		if ctx.Err() != nil {
			return
		}
		u.mu.Lock()
		u.grid, u.asOf = sts, time.Now()
		u.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-u.wake:
		case <-time.After(refresh):
		}
	}
}

func (u *fleetUI) Grid() ([]fleet.HostStatus, time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.grid, u.asOf
}

func (u *fleetUI) Rollouts(ctx context.Context, limit int) ([]fleet.RolloutRow, error) {
	return u.a.f.DB.Rollouts(ctx, limit)
}

func (u *fleetUI) Rollout(ctx context.Context, id int64) (fleet.RolloutRow, []fleet.Transition, error) {
	if err := u.a.f.DB.Flush(ctx); err != nil { // what the running rollout posted
		return fleet.RolloutRow{}, nil, err
	}
	return u.a.f.DB.Rollout(ctx, id)
}

func (u *fleetUI) Running(id int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.running[id]
	return ok
}

func (u *fleetUI) Stop(id int64, how string) error {
	u.mu.Lock()
	stop, ok := u.running[id]
	u.mu.Unlock()
	if !ok {
		return web.ErrNotRunning
	}
	select {
	case stop <- how:
		return nil
	default:
		return errors.New("the rollout was already asked to stop")
	}
}

// Deploy resolves commit (empty: the branch) once and rolls it out in the
// background, under the operator's rollout lock, as `fleet deploy` does;
// it returns once the rollout has its id in the ledger.
func (u *fleetUI) Deploy(ctx context.Context, commit, actor string) (int64, error) {
	opts := u.opts
	var err error
	if opts.Commit, err = fleet.Resolve(ctx, opts.Repo, cmp.Or(commit, u.a.cfg.Branch)); err != nil {
		return 0, usageError{Err: fmt.Errorf("%w (fleet ui --repo names the local repository)", err)}
	}
	held, err := u.a.rolloutLock(ctx)
	if err != nil {
		return 0, err
	}
	stop := make(chan string, 1)
	opts.Stop = stop
	ids := make(chan int64, 1)
	ended := make(chan error, 1)
	var once sync.Once
	f := *u.a.f // this rollout's own: its actor, and its events
	f.Actor = actor
	f.Events = func(ev fleet.Event) {
		if ev.Rollout != 0 {
			once.Do(func() {
				u.mu.Lock()
				u.running[ev.Rollout] = stop
				u.mu.Unlock()
				ids <- ev.Rollout
			})
		}
	}
	u.wg.Go(func() {
		defer func() { _ = held.Release() }()
		res, err := f.Rollout(u.ctx, u.a.hosts, opts)
		if res != nil {
			u.mu.Lock()
			delete(u.running, res.ID)
			u.mu.Unlock()
		}
		select {
		case u.wake <- struct{}{}:
		default: // a gathering is asked for already
		}
		if err == nil && res != nil && res.ID == 0 {
			err = errors.New(res.Error)
		}
		ended <- err
	})
	select {
	case id := <-ids:
		return id, nil
	case err := <-ended:
		return 0, cmp.Or(err, errors.New("the rollout ended before it began"))
	}
}
