// Package agent is the daemon for one app (`slipway agent`): it recovers
// an interrupted deploy at start, then deploys when the branch moves
// (polling) or a signed webhook arrives, serves the HTTP API and the
// control socket, and runs at most one deploy at a time with at most one
// waiting.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/api"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/events"
	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/notify"
	"github.com/slipway-dev/slipway/internal/sdnotify"
	"github.com/slipway-dev/slipway/internal/web"
	"github.com/slipway-dev/slipway/internal/webhook"
)

// Agent runs the triggers, the scheduler and the API for one app.
type Agent struct {
	cfg      *config.Config
	eng      *deploy.Engine
	db       *ledger.DB
	log      *slog.Logger
	broker   *events.Broker
	metrics  *Metrics
	notifier *notify.Notifier
	sched    *scheduler
	secrets  Secrets
	version  string
	started  time.Time

	// ShutdownWait is how long a SIGTERM waits for a running deploy before
	// cancelling it (a cancelled deploy past its switch still rolls back).
	ShutdownWait time.Duration
	// Settle is how quiet the pushes must be before a deploy of the branch
	// tip that waited behind another one starts (SettleMax at most): a burst
	// of pushes then ends in one deploy of its last commit, not one per
	// deploy's length. A push that finds no deploy running starts at once.
	Settle, SettleMax time.Duration

	// Reload, when set, loads the config again and wires an engine for it.
	// The agent calls it before each check of the branch and each deploy,
	// so that an edited slipway.yml or env file counts from the next deploy
	// on, as it does for the CLI. A config that does not load is logged and
	// the last one that did is kept.
	Reload func() (*deploy.Engine, error)

	engMu    sync.Mutex // guards eng
	reloadMu sync.Mutex // one reload at a time; guards the two below
	// reloadErr is the last reload error logged, settings the config whose
	// agent settings were last compared (nil: cfg).
	reloadErr string
	settings  *config.Config

	// clock is the time the settle of pushes runs on; nil is the real one.
	clock deploy.Clock

	checks chan string             // "check the branch now", with the trigger
	hooks  map[string]http.Handler // webhook handlers by provider, sharing one replay filter
	mu     sync.Mutex
	state  agentState
}

// agentState is what the agent knows beyond the ledger, for status.
type agentState struct {
	RemoteTip   string    `json:"remote_tip,omitempty"`
	RemoteError string    `json:"remote_error,omitempty"`
	LastCheck   time.Time `json:"last_check,omitzero"`
	Frozen      string    `json:"frozen,omitempty"`
	Running     int64     `json:"running_deploy,omitempty"`
	Waiting     int64     `json:"waiting_deploy,omitempty"`
	badLogged   string
	// stoppedLogged is the tip last held because services are stopped.
	stoppedLogged string
	inflight      string    // the commit the running deploy targets
	lastPush      time.Time // when the last webhook push arrived
	fleetLogged   string    // the tip last logged as left to the fleet
	// repairWait is the pause before the next repair of a live release
	// that stays down, nextRepair when it may come.
	repairWait time.Duration
	nextRepair time.Time
}

// New checks the agent's settings and wires it. Settings mistakes are
// usage errors (exit 2) that name the setting.
func New(cfg *config.Config, eng *deploy.Engine, db *ledger.DB, logger *slog.Logger, version string) (*Agent, error) {
	secrets, err := LoadSecrets(cfg)
	if err != nil {
		return nil, exitcode.UsageError{Err: err}
	}
	var urls []string
	for _, n := range cfg.Notify {
		urls = append(urls, n.URL)
	}
	a := &Agent{
		cfg: cfg, eng: eng, db: db, log: logger, version: version,
		broker:       events.New(1000),
		notifier:     notify.New(urls, logger.With("component", "notify")),
		sched:        newScheduler(),
		secrets:      secrets,
		checks:       make(chan string, 1),
		ShutdownWait: 2 * time.Minute,
		Settle:       time.Second,
		SettleMax:    10 * time.Second,
	}
	a.metrics = NewMetrics(cfg.App, func() []deploy.ServiceStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return a.engine().ServiceStates(ctx)
	})
	a.hooks = a.webhookHandlers()
	a.wire(eng)
	return a, nil
}

// wire connects an engine's events to the agent.
func (a *Agent) wire(eng *deploy.Engine) {
	eng.Observe = func(ev deploy.Event) {
		a.broker.Publish(ev)
		a.metrics.step(ev)
	}
	eng.OnRecover = func(r deploy.Recovered) {
		a.log.Warn("recovered an interrupted deploy", "deploys", r.Deploys, "actions", r.Actions)
	}
}

func (a *Agent) now() time.Time { return a.clk().Now() }

func (a *Agent) clk() deploy.Clock {
	if a.clock == nil {
		return deploy.SystemClock{}
	}
	return a.clock
}

// engine returns the engine of the config loaded last.
func (a *Agent) engine() *deploy.Engine {
	a.engMu.Lock()
	defer a.engMu.Unlock()
	return a.eng
}

// reload loads the config again (see Reload). What the agent itself was
// started with (its listeners, secrets, poll interval, notify URLs) stays:
// a change there is logged, to be applied by restarting the agent.
func (a *Agent) reload() *deploy.Engine {
	if a.Reload == nil {
		return a.engine()
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	eng, err := a.Reload()
	if err != nil {
		if msg := err.Error(); msg != a.reloadErr {
			a.reloadErr = msg
			a.log.Error("the config no longer loads; going on with the one loaded before", "err", err)
		}
		return a.engine()
	}
	if a.reloadErr != "" {
		a.reloadErr = ""
		a.log.Info("the config loads again")
	}
	if a.settings == nil {
		a.settings = a.cfg
	}
	if changed := agentSettingsChanged(a.settings, eng.Cfg); changed != "" {
		a.log.Warn("restart the agent to apply the change of "+changed, "config", eng.Cfg.Path)
	}
	a.settings = eng.Cfg // each change is told once
	a.wire(eng)
	a.engMu.Lock()
	a.eng = eng
	a.engMu.Unlock()
	return eng
}

// agentSettingsChanged names the agent's own settings that differ between
// two configs ("" when none do).
func agentSettingsChanged(old, now *config.Config) string {
	var changed []string
	if old.Branch != now.Branch {
		changed = append(changed, "branch") // the webhooks' filter
	}
	if !reflect.DeepEqual(old.Triggers, now.Triggers) {
		changed = append(changed, "triggers")
	}
	if !reflect.DeepEqual(old.API, now.API) {
		changed = append(changed, "api")
	}
	if !reflect.DeepEqual(old.Notify, now.Notify) {
		changed = append(changed, "notify")
	}
	return strings.Join(changed, ", ")
}

// Run serves until ctx ends, then shuts down: listeners close at once, a
// running deploy gets ShutdownWait to finish.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	if err := a.engine().TryRecover(ctx); err != nil {
		a.log.Error("recovery at start", "err", err)
	}
	if err := a.dropStaleQueue(ctx); err != nil {
		return err
	}
	a.register(ctx)

	srv := a.apiServer()
	var servers []*http.Server
	var listeners []net.Listener
	listen := func(network, addr string, h http.Handler) error {
		l, err := net.Listen(network, addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		if network == "unix" {
			if err := os.Chmod(addr, 0o600); err != nil {
				_ = l.Close()
				return err
			}
		}
		hs := api.HTTPServer(h)
		servers = append(servers, hs)
		listeners = append(listeners, l)
		return nil
	}
	handler := srv.Handler()
	apiAddr := a.cfg.API.Listen
	if apiAddr == "" {
		apiAddr = "127.0.0.1:9010"
	}
	sock := a.engine().Layout.SocketPath()
	_ = os.Remove(sock) // a socket left by a killed agent
	for _, l := range []struct{ network, addr string }{{"tcp", apiAddr}, {"unix", sock}} {
		if err := listen(l.network, l.addr, handler); err != nil {
			closeAll(listeners)
			return err
		}
	}
	if wh := a.cfg.Triggers.Webhook; wh != nil && wh.Listen != "" && wh.Listen != apiAddr {
		if err := listen("tcp", wh.Listen, a.webhookMux()); err != nil {
			closeAll(listeners)
			return err
		}
	}
	// Every goroutine Run starts is joined before it returns.
	var wg sync.WaitGroup
	for i, hs := range servers {
		wg.Go(func() {
			if err := hs.Serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("server", "addr", listeners[i].Addr().String(), "err", err)
			}
		})
	}
	a.log.Info("agent ready", "api", apiAddr, "socket", sock,
		"poll", a.cfg.Triggers.Poll.D().String(), "webhook", a.cfg.Triggers.Webhook != nil)
	sdnotify.Ready()

	jobsCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		a.worker(ctx, jobsCtx)
	}()
	wg.Go(func() { a.poll(ctx) })

	<-ctx.Done()
	a.log.Info("shutting down")
	sdnotify.Stopping()
	// The listeners close at once; requests in flight get serverShutdown,
	// then their connections are closed (a feed's stream never ends).
	var shut sync.WaitGroup
	for _, hs := range servers {
		shut.Go(func() {
			sctx, cancel := context.WithTimeout(context.Background(), serverShutdown)
			defer cancel()
			if hs.Shutdown(sctx) != nil {
				_ = hs.Close()
			}
		})
	}
	shut.Wait()
	select {
	case <-workerDone:
	case <-time.After(a.ShutdownWait):
		a.log.Warn("a deploy is still running after the shutdown wait; cancelling it (it rolls back if it switched)")
		cancelJobs()
		<-workerDone
	}
	wg.Wait()
	_ = os.Remove(sock)
	return nil
}

// serverShutdown is how long the agent's HTTP servers wait for requests in
// flight when it stops.
const serverShutdown = 2 * time.Second

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

func (a *Agent) apiServer() *api.Server {
	srv := api.New(a.secrets.Token)
	srv.Backend = a
	srv.Ledger = a.db
	srv.Broker = a.broker
	srv.Metrics = promHandler(a.metrics)
	srv.LogDir = a.engine().Layout.DeployLogDir()
	srv.Version = a.version
	srv.Started = time.Now()
	srv.Webhooks = a.hooks
	pages := web.New(a.cfg.App, a.secrets.Token, a.secrets.Viewer)
	pages.Status, pages.Ledger, pages.Backend = a.Status, a.db, dashboard{a}
	srv.Pages, srv.PageRoutes, srv.SignedIn = pages.Handler(), web.Routes, pages.SignedIn
	return srv
}

func (a *Agent) webhookHandlers() map[string]http.Handler {
	wh := a.cfg.Triggers.Webhook
	if wh == nil {
		return nil
	}
	replay := webhook.NewReplay(1024)
	hs := map[string]http.Handler{}
	for _, p := range []webhook.Provider{webhook.GitHub, webhook.GitLab, webhook.Gitea} {
		hs[string(p)] = webhook.NewHandler(p, a.secrets.Webhook, a.cfg.Branch, replay,
			func(webhook.Event) {
				a.mu.Lock()
				a.state.lastPush = a.now()
				a.mu.Unlock()
				a.wake("webhook")
			},
			func(p webhook.Provider, result string) {
				a.metrics.Webhook(string(p), result)
				if result == "unauthorized" {
					a.log.Warn("webhook refused: bad or missing signature", "provider", p)
				}
			})
	}
	return hs
}

// webhookMux serves only the webhook routes (and /health) on the webhook listener.
func (a *Agent) webhookMux() http.Handler {
	mux := http.NewServeMux()
	for p, h := range a.hooks {
		mux.Handle("/webhook/"+p, h)
	}
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return mux
}

// wake asks the poll loop to check the branch now (coalescing requests).
func (a *Agent) wake(trigger string) {
	select {
	case a.checks <- trigger:
	default:
	}
}

// poll checks the branch tip every triggers.poll (with 10% jitter) and
// whenever a webhook wakes it. Remote errors back off from 5 s, doubling to
// 5 min, and are logged once, not every tick.
func (a *Agent) poll(ctx context.Context) {
	every := a.cfg.Triggers.Poll.D()
	var backoff time.Duration
	for {
		var timer <-chan time.Time
		switch {
		case backoff > 0:
			timer = time.After(backoff)
		case every > 0:
			timer = time.After(jitter(every, rand.Float64))
		}
		trigger := "poll"
		select {
		case <-ctx.Done():
			return
		case trigger = <-a.checks:
		case <-timer:
		}
		err := a.check(ctx, trigger)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if backoff == 0 {
				a.log.Warn("cannot reach the remote; backing off", "err", err)
			}
			backoff = min(max(5*time.Second, backoff*2), 5*time.Minute)
		case backoff > 0:
			a.log.Info("remote reachable again")
			backoff = 0
		}
	}
}

// check asks the remote for the branch tip and queues a deploy when it is
// neither live nor being deployed nor a commit that failed.
func (a *Agent) check(ctx context.Context, trigger string) error {
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	eng := a.reload()
	tip, err := eng.Mirror.RemoteTip(tctx, eng.Cfg.Branch)
	a.mu.Lock()
	a.state.LastCheck = time.Now()
	if err != nil {
		a.state.RemoteError = err.Error()
		a.mu.Unlock()
		return err
	}
	a.state.RemoteTip, a.state.RemoteError = tip, ""
	inflight := a.state.inflight
	a.mu.Unlock()

	safe, err := eng.Layout.SafeCommit()
	if err != nil {
		return err
	}
	if tip == inflight {
		return nil
	}
	if tip == safe {
		return a.repairIfDown(ctx, trigger)
	}
	if fr := eng.Fleet(); fr != nil {
		// The fleet deploys this host, in its batches: a tip deployed
		// here alone would leave it on another commit than the rest.
		a.mu.Lock()
		first := a.state.fleetLogged != tip
		a.state.fleetLogged = tip
		a.mu.Unlock()
		if first {
			a.log.Warn("this host is in a fleet: `slipway fleet deploy` deploys new tips, not the agent (`slipway registry leave` ends that)",
				"commit", tip, "fleet", fr.String())
		}
		return a.repairIfDown(ctx, trigger)
	}
	if bad, err := a.db.IsBad(ctx, tip); err != nil {
		return err
	} else if bad {
		if err := a.repairIfDown(ctx, trigger); err != nil {
			return err
		}
		a.mu.Lock()
		first := a.state.badLogged != tip
		a.state.badLogged = tip
		a.mu.Unlock()
		if first {
			a.log.Warn("branch tip failed before; not retrying it (push a fix, or deploy it with --force)", "commit", tip)
		}
		return nil
	}
	if stopped := eng.Stopped(); len(stopped) > 0 {
		a.mu.Lock()
		first := a.state.stoppedLogged != tip
		a.state.stoppedLogged = tip
		a.mu.Unlock()
		if first {
			a.log.Warn("services are stopped (`slipway stop`); holding the new tip until `slipway start`", "commit", tip, "stopped", stopped)
		}
		return nil
	}
	if h, _, err := lock.Status(eng.Layout.LockFile()); err == nil && h.Frozen {
		a.mu.Lock()
		first := a.state.Frozen == ""
		a.state.Frozen = h.Message
		a.mu.Unlock()
		if first {
			a.log.Warn("deploys are frozen; holding the new tip", "commit", tip, "message", h.Message)
		}
		return nil
	}
	a.mu.Lock()
	a.state.Frozen = ""
	a.mu.Unlock()
	_, err = a.Enqueue(ctx, api.Request{Kind: ledger.KindDeploy, Trigger: trigger})
	return err
}

// repairIfDown queues a deploy when nothing new is to be deployed but the
// live release is down: the deploy's plan restarts it and proves it
// healthy. Repairs that do not help are retried with a growing pause (up
// to repairMaxWait), so a release that cannot come back is not restarted
// in a loop.
func (a *Agent) repairIfDown(ctx context.Context, trigger string) error {
	why := a.engine().LiveDown(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	if why == "" {
		a.state.repairWait, a.state.nextRepair = 0, time.Time{}
		return nil
	}
	if a.state.Running != 0 || a.state.Waiting != 0 || time.Now().Before(a.state.nextRepair) {
		return nil
	}
	a.state.repairWait = min(max(2*a.state.repairWait, repairFirstWait), repairMaxWait)
	a.state.nextRepair = time.Now().Add(a.state.repairWait)
	a.log.Warn("the live release is down; restarting it", "why", why, "next_try_after", a.state.repairWait)
	a.mu.Unlock()
	_, err := a.Enqueue(ctx, api.Request{Kind: ledger.KindDeploy, Trigger: trigger})
	a.mu.Lock()
	return err
}

// The pauses between repairs of a live release that stays down.
const (
	repairFirstWait = 30 * time.Second
	repairMaxWait   = 30 * time.Minute
)

// dropStaleQueue finishes deploys queued by an agent that is gone.
func (a *Agent) dropStaleQueue(ctx context.Context) error {
	queued, err := a.db.QueuedDeploys(ctx)
	if err != nil {
		return err
	}
	for _, d := range queued {
		if err := a.db.FinishDeploy(ctx, d.ID, ledger.Skipped, "the agent stopped before it ran", false, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// register records this host and its versions in the registry.
func (a *Agent) register(ctx context.Context) {
	host, _ := os.Hostname()
	vm := ledger.VM{Name: host, Address: a.cfg.API.Listen, App: a.cfg.App}
	vm.SafeCommit, _ = a.engine().Layout.SafeCommit()
	if name, _ := a.engine().Layout.Current(); name != "" {
		if r, err := a.engine().Layout.Open(name); err == nil {
			vm.CurrentCommit, vm.Version = r.Commit, r.Version
		}
	}
	a.metrics.live(vm.CurrentCommit, vm.Version)
	if err := a.db.UpsertVM(ctx, vm); err != nil {
		a.log.Warn("register", "err", err)
	}
}
