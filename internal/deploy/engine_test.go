package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/proxy"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/service/process"
	"github.com/slipway-dev/slipway/internal/testkit"
)

// The engine's decisions, tested from inside with real parts: a git
// repository, the process manager running python3's http.server, the
// SQLite ledger, all in a temp dir.

// The test binary doubles as the process manager's supervisor.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		os.Exit(process.Supervise(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// rig is one app: a repository whose commits serve /health while the file
// health exists, deployed by an engine into its own root.
type rig struct {
	t                  *testing.T
	src, root, cfgPath string
	port               int
	db                 *ledger.DB
	e                  *Engine
	proxy              ProxyControl // set on each engine (behindProxy)
}

// rigConfig is the app's slipway.yml; %[1]s is the repository, %[2]s the
// root, %[3]s python3, %[4]d the port, %[5]s extra top-level keys (where
// {port} is the port).
const rigConfig = `app: rig
repo: %[1]s
root: %[2]s
manager: process
keep_releases: 5
env_files:
  rig: rig.env
services:
  web:
    command: %[3]s -m http.server $PORT --bind 127.0.0.1
    env_file: rig
    port: %[4]d
    stop_timeout: 5s
health:
  url: http://127.0.0.1:%[4]d/health
  timeout: 5s
  interval: 50ms
  settle: 100ms
%[5]s`

func python3(t *testing.T) string {
	// The system's python3 starts in milliseconds; a pyenv shim does not.
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3")
	}
	return p
}

func newRig(t *testing.T, extra string) *rig {
	t.Helper()
	base := t.TempDir()
	r := &rig{t: t, src: filepath.Join(base, "src"), root: filepath.Join(base, "root"), cfgPath: filepath.Join(base, "slipway.yml"), port: testkit.FreePort(t)}
	if err := os.MkdirAll(r.src, 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.Git(t, r.src, "init", "-q", "-b", "main")
	r.commit("first", map[string]string{"health": "ok\n"})
	extra = strings.ReplaceAll(extra, "{port}", fmt.Sprint(r.port))
	if err := os.WriteFile(r.cfgPath, fmt.Appendf(nil, rigConfig, r.src, r.root, python3(t), r.port, extra), 0o644); err != nil {
		t.Fatal(err)
	}
	r.writeEnv("GREETING=hello\n")
	db, err := ledger.Open(filepath.Join(r.root, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	r.db = db
	r.reload()
	t.Cleanup(func() {
		_, _ = r.e.StopEverything(context.Background())
		_ = db.Close()
	})
	return r
}

// reload loads the config and env files again, into a new engine (as the
// next command would).
func (r *rig) reload() {
	r.t.Helper()
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		r.t.Fatal(err)
	}
	layout := release.Layout{Root: cfg.Root}
	mgr := process.New(layout.RunDir(), layout.LogDir())
	mgr.StartGrace = 5 * time.Millisecond
	r.e = New(cfg, r.db, mgr)
	if r.proxy != nil {
		r.e.Proxy = r.proxy
	}
}

// behindProxy puts the web service behind slipway's proxy (the real one,
// in-process) on a port of its own, with ctl wrapping the proxy's control
// client (nil: the client itself). It returns the proxy's address.
func (r *rig) behindProxy(ctl func(ProxyControl) ProxyControl) string {
	t := r.t
	listen := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	// The web service listens on a port of its own, given in $PORT.
	text, err := os.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text = []byte(strings.Replace(string(text), fmt.Sprintf("    port: %d\n", r.port),
		"    proxy: { listen: "+listen+", health: /health, drain_timeout: 1s }\n", 1))
	text = []byte(strings.Replace(string(text), fmt.Sprintf("url: http://127.0.0.1:%d/health", r.port), "url: http://"+listen+"/health", 1))
	if err := os.WriteFile(r.cfgPath, text, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := &proxy.Server{StatePath: filepath.Join(r.root, "run", "proxy.json"), HealthEvery: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if err := os.MkdirAll(filepath.Join(r.root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := (&release.Layout{Root: r.root}).ProxySocket()
	go func() { _ = srv.Serve(ctx, sock, time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	r.proxy = proxy.NewClient(sock)
	if ctl != nil {
		r.proxy = ctl(r.proxy)
	}
	testkit.WaitFor(t, 10*time.Second, "the proxy's control socket", func() bool { return r.proxy.Ping(context.Background()) == nil })
	r.reload()
	return listen
}

func (r *rig) writeEnv(content string) {
	r.t.Helper()
	dir := filepath.Join(r.root, "env")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rig.env"), []byte(content), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// commit writes files ("" deletes one) and commits them; it returns the sha.
func (r *rig) commit(msg string, files map[string]string) string {
	r.t.Helper()
	return testkit.Commit(r.t, r.src, msg, files)
}

func (r *rig) deploy(opts Options) (Result, error) {
	r.t.Helper()
	return r.e.Deploy(r.t.Context(), opts)
}

func (r *rig) mustDeploy() Result {
	r.t.Helper()
	res, err := r.deploy(Options{})
	if err != nil {
		r.t.Fatalf("deploy: %v", err)
	}
	return res
}

// current is the commit current's release runs ("" without one).
func (r *rig) current() string {
	name, _ := r.e.Layout.Current()
	if name == "" {
		return ""
	}
	rel, err := r.e.Layout.Open(name)
	if err != nil {
		r.t.Fatal(err)
	}
	return rel.Commit
}

func (r *rig) healthy() bool {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/health", r.port))
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (r *rig) row(id int64) ledger.Deploy {
	r.t.Helper()
	ds, err := r.db.Deploys(r.t.Context(), 0)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	r.t.Fatalf("no ledger row %d", id)
	return ledger.Deploy{}
}

// plan is the decision a deploy of target would take now.
func (r *rig) plan(target string, force bool) decision {
	r.t.Helper()
	safe, err := r.e.Layout.SafeCommit()
	if err != nil {
		r.t.Fatal(err)
	}
	safeRel, _ := r.e.releaseOf(r.t.Context(), safe)
	return r.e.planSkip(r.t.Context(), target, force, safeRel, r.e.liveRelease())
}

// appendConfig adds text to the rig's slipway.yml and reloads it.
func appendConfig(t *testing.T, r *rig, text string) {
	t.Helper()
	old, err := os.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.cfgPath, append(old, text...), 0o644); err != nil {
		t.Fatal(err)
	}
	r.reload()
}

// trimConfig takes text, added last, off the rig's slipway.yml and
// reloads it.
func trimConfig(t *testing.T, r *rig, text string) {
	t.Helper()
	old, err := os.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.cfgPath, []byte(strings.TrimSuffix(string(old), text)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.reload()
}

// TestPlanSkip: what a deploy of a target decides, state by state, in the
// order an operator's day goes.
func TestPlanSkip(t *testing.T) {
	r := newRig(t, "")
	a := r.mustDeploy().Commit
	b := r.commit("second", map[string]string{"README": "b\n"})
	// failedWith records a finished deploy of b that marked it bad, as a
	// failed deploy leaves the ledger.
	failedWith := func(outcome ledger.Outcome, msg string) func() {
		return func() {
			id, err := r.db.StartDeploy(t.Context(), ledger.Deploy{Trigger: "manual", Kind: ledger.KindDeploy, Commit: b, PreviousCommit: a, Started: time.Now()})
			if err == nil {
				err = r.db.FinishDeploy(t.Context(), id, outcome, msg, true, time.Now())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name    string
		before  func()
		target  string
		force   bool
		skip    string // a part of decision.skip ("" = deploy it)
		repair  bool
		change  string // "reconfigure" or "rebuild", or ""
		stepMsg string // a part of decision.skipStep
	}{
		{name: "the safe commit, live, healthy, config unchanged", target: a, skip: "is the safe commit and is healthy"},
		{name: "forced, the safe commit is deployed again", target: a, force: true},
		{name: "a new commit", target: b},
		{name: "a commit marked bad", target: b, skip: "failed before and is marked bad (health: got status 500)", stepMsg: "skip " + b[:7] + ": marked bad",
			before: failedWith(ledger.Failed, "health: got status 500")},
		{name: "forced, a bad commit is deployed", target: b, force: true},
		{name: "a commit rolled back from", target: b, skip: "was rolled back from",
			before: failedWith(ledger.Failed, "rolled back by deploy 7: settle: the service exited")},
		{name: "an env file changed", target: a, change: "reconfigure",
			before: func() { r.writeEnv("GREETING=bonjour\n"); r.reload() }},
		{name: "the env file as it was", target: a, skip: "is the safe commit and is healthy",
			before: func() { r.writeEnv("GREETING=hello\n"); r.reload() }},
		{name: "require_env added", target: a, change: "reconfigure",
			before: func() { appendConfig(t, r, "require_env: [GREETING]\n") }},
		{name: "require_env as it was", target: a, skip: "is the safe commit and is healthy",
			before: func() { trimConfig(t, r, "require_env: [GREETING]\n") }},
		{name: "a shared path added", target: a, change: "rebuild",
			before: func() { appendConfig(t, r, "shared: [data]\n") }},
		{name: "shared as it was", target: a, skip: "is the safe commit and is healthy",
			before: func() { trimConfig(t, r, "shared: [data]\n") }},
		{name: "a build step added", target: a, change: "rebuild",
			before: func() { appendConfig(t, r, "build:\n  - run: \"true\"\n") }},
		{name: "the live release down", target: a, skip: "nothing to deploy", repair: true,
			before: func() {
				trimConfig(t, r, "build:\n  - run: \"true\"\n")
				if _, err := r.e.StopEverything(t.Context()); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		d := r.plan(s.target, s.force)
		got := "deploy"
		switch {
		case d.change != nil:
			got = d.change.action()
		case d.skip != "":
			got = "skip"
		}
		want := "deploy"
		switch {
		case s.change != "":
			want = s.change
		case s.skip != "":
			want = "skip"
		}
		if got != want || !strings.Contains(d.skip, s.skip) || (d.repair != "") != s.repair || !strings.Contains(d.skipStep, s.stepMsg) {
			t.Errorf("%s: got %s (skip %q, step %q, repair %q), want %s (skip with %q, step with %q, repair %v)",
				s.name, got, d.skip, d.skipStep, d.repair, want, s.skip, s.stepMsg, s.repair)
		}
	}
}

// TestFailDecides: how each kind of failure ends: the ledger's outcome,
// whether the commit is marked bad, what is live, and what the failure
// says.
func TestFailDecides(t *testing.T) {
	tests := []struct {
		name    string
		extra   string                        // config keys
		breakIt func(r *rig) (string, func()) // makes the next commit fail; returns it and an undo
		outcome ledger.Outcome
		bad     bool
		state   string // a part of Failure.State
		step    string
	}{
		{
			name:  "a build step fails: nothing live changed, the commit is bad",
			extra: "build:\n  - name: check\n    run: test ! -f BROKEN\n",
			breakIt: func(r *rig) (string, func()) {
				return r.commit("broken build", map[string]string{"BROKEN": "1\n"}), nil
			},
			outcome: ledger.Failed, bad: true, state: "nothing live changed", step: "build:check",
		},
		{
			name: "health fails after the switch: rolled back, the commit is bad",
			breakIt: func(r *rig) (string, func()) {
				return r.commit("no health", map[string]string{"health": ""}), nil
			},
			outcome: ledger.RolledBack, bad: true, state: "rolled back", step: "health",
		},
		{
			name:  "a required variable is missing: the host's fault, not the commit's",
			extra: "require_env: [GREETING]\n",
			breakIt: func(r *rig) (string, func()) {
				r.writeEnv("OTHER=1\n")
				r.reload()
				return r.commit("fine", map[string]string{"README": "x\n"}), func() { r.writeEnv("GREETING=hello\n"); r.reload() }
			},
			outcome: ledger.Failed, bad: false, state: "nothing live changed", step: "verify-env",
		},
		{
			name: "the port is held by another process: the host's fault",
			breakIt: func(r *rig) (string, func()) {
				_, _ = r.e.StopEverything(r.t.Context())
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
				if err != nil {
					r.t.Fatal(err)
				}
				return r.commit("fine", map[string]string{"README": "x\n"}), func() { _ = l.Close() }
			},
			outcome: ledger.Failed, bad: false, state: "nothing live changed", step: "verify-env",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tt.extra)
			good := r.mustDeploy().Commit
			target, undo := tt.breakIt(r)
			res, err := r.deploy(Options{})
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("deploy of %s: want a *Failure, got %v", target[:7], err)
			}
			row := r.row(res.DeployID)
			if row.Outcome != tt.outcome || row.Bad != tt.bad || f.Step != tt.step || !strings.Contains(f.State, tt.state) {
				t.Fatalf("outcome %s, bad %v, step %s, state %q; want %s, %v, %s, %q\n%v",
					row.Outcome, row.Bad, f.Step, f.State, tt.outcome, tt.bad, tt.step, tt.state, err)
			}
			bad, _ := r.db.IsBad(t.Context(), target)
			if bad != tt.bad {
				t.Fatalf("IsBad(%s) = %v, want %v", target[:7], bad, tt.bad)
			}
			if undo != nil {
				undo()
			}
			if got := r.current(); got != good {
				t.Fatalf("current runs %s, want the good %s", got, good[:7])
			}
			if tt.step != "verify-env" && !r.healthy() {
				t.Fatal("the good release does not serve after the failure")
			}
			// A host fault leaves the commit deployable once the host is mended.
			if !tt.bad {
				if res, err := r.deploy(Options{}); err != nil || res.Commit != target {
					t.Fatalf("deploy after the host was mended: %+v %v", res, err)
				}
			}
		})
	}
}

// TestRecoverInterrupted: what recovery does with what a deploy killed at
// each point left: its ledger row, current, the services, and its release.
func TestRecoverInterrupted(t *testing.T) {
	tests := []struct {
		name string
		// left makes what the killed deploy of next left, its row id given.
		left    func(r *rig, id int64, next string) release.Release
		outcome ledger.Outcome
		live    string // "good" or "next": the commit current runs after
		kept    bool   // the killed deploy's release is still there
	}{
		{name: "killed while exporting its release", outcome: ledger.Interrupted, live: "good",
			left: func(r *rig, _ int64, _ string) release.Release {
				// A partial tree, as an interrupted Create leaves one.
				if err := os.MkdirAll(filepath.Join(r.e.Layout.ReleasesDir(), ".tmp-20260101T000000Z-partial", "web"), 0o755); err != nil {
					r.t.Fatal(err)
				}
				return release.Release{}
			}},
		{name: "killed after building, before the switch", outcome: ledger.Interrupted, live: "good",
			left: func(r *rig, id int64, next string) release.Release {
				return r.built(id, next)
			}},
		{name: "killed after the switch", outcome: ledger.Interrupted, live: "good",
			left: func(r *rig, id int64, next string) release.Release {
				rel := r.built(id, next)
				if err := r.e.Layout.Switch(rel.Name); err != nil {
					r.t.Fatal(err)
				}
				return rel
			}},
		{name: "killed after mark-safe", outcome: ledger.Succeeded, live: "next", kept: true,
			left: func(r *rig, id int64, next string) release.Release {
				rel := r.built(id, next)
				if err := r.e.Layout.Switch(rel.Name); err != nil {
					r.t.Fatal(err)
				}
				if _, err := r.e.startAll(r.t.Context(), vars{rel: rel}, nil); err != nil {
					r.t.Fatal(err)
				}
				if err := r.e.Layout.WriteSafeCommit(next); err != nil {
					r.t.Fatal(err)
				}
				return rel
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "")
			good := r.mustDeploy().Commit
			next := r.commit("second", map[string]string{"README": "2\n"})
			ctx := t.Context()
			if _, err := r.e.Mirror.FetchBranch(ctx, "main"); err != nil {
				t.Fatal(err)
			}
			id, err := r.db.StartDeploy(ctx, ledger.Deploy{Trigger: "manual", Kind: ledger.KindDeploy, Commit: next, PreviousCommit: good, Started: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			rel := tt.left(r, id, next)

			var recovered Recovered
			r.e.OnRecover = func(rc Recovered) { recovered.Deploys = append(recovered.Deploys, rc.Deploys...) }
			if err := r.e.TryRecover(ctx); err != nil {
				t.Fatal(err)
			}
			if d := r.row(id); d.Outcome != tt.outcome {
				t.Fatalf("the killed deploy's row: %s, want %s", d.Outcome, tt.outcome)
			}
			if len(recovered.Deploys) != 1 || recovered.Deploys[0] != id {
				t.Fatalf("recovery reported %v, want deploy %d", recovered.Deploys, id)
			}
			want := map[string]string{"good": good, "next": next}[tt.live]
			if got := r.current(); got != want {
				t.Fatalf("current runs %s after recovery, want %s", got, want[:7])
			}
			testkit.WaitFor(t, 10*time.Second, "the live release serving", r.healthy)
			entries, _ := os.ReadDir(r.e.Layout.ReleasesDir())
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") || (!tt.kept && e.Name() == rel.Name) {
					t.Fatalf("left behind: releases/%s", e.Name())
				}
			}
			// Recovery is idempotent: a second one finds nothing to do.
			recovered = Recovered{}
			if err := r.e.TryRecover(ctx); err != nil || len(recovered.Deploys) != 0 {
				t.Fatalf("a second recovery: %v %v", recovered, err)
			}
		})
	}
}

// built exports next into a release for the deploy row id and records it
// there, as the prepare step does.
func (r *rig) built(id int64, next string) release.Release {
	r.t.Helper()
	rel, err := r.e.Layout.Create(r.t.Context(), r.e.Mirror, next, time.Now(), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	d := r.row(id)
	d.Release = rel.Name
	if err := r.db.UpdateDeploy(r.t.Context(), d); err != nil {
		r.t.Fatal(err)
	}
	return rel
}

// TestRollbackChoosesItsTarget: the previous good release by default, a
// named kept one, and clear errors when there is none; step by step, in
// the order an operator's day goes.
func TestRollbackChoosesItsTarget(t *testing.T) {
	r := newRig(t, "")
	shas := map[string]string{} // a, b, c: the commits deployed so far
	deployNext := func(name string) func() {
		return func() {
			if name != "a" {
				r.commit(name, map[string]string{"README": name + "\n"})
			}
			shas[name] = r.mustDeploy().Commit
		}
	}
	steps := []struct {
		name   string
		before func()
		to     string // a name of shas (its first 8 digits are given), or a commit id
		want   string // the name of the commit live after; "" = refused
		errIs  error
		prev   string // the rollback row's previous commit
	}{
		{name: "nothing deployed", errIs: ErrNoRelease},
		{name: "one release", before: deployNext("a"), errIs: ErrNoRelease},
		{name: "by default, the previous good release", before: func() { deployNext("b")(); deployNext("c")() }, want: "b", prev: "c"},
		{name: "a named kept release", to: "a", want: "a", prev: "b"},
		{name: "a commit with no kept release", to: "deadbeef"},
	}
	live := ""
	for _, s := range steps {
		if s.before != nil {
			s.before()
			live = r.current()
		}
		to := s.to
		if sha, ok := shas[to]; ok {
			to = sha[:8]
		}
		res, err := r.e.Rollback(t.Context(), RollbackOptions{To: to})
		if s.want == "" {
			if err == nil || (s.errIs != nil && !errors.Is(err, s.errIs)) {
				t.Fatalf("%s: rollback: %v, want a refusal (%v)", s.name, err, s.errIs)
			}
			if r.current() != live || (live != "" && !r.healthy()) {
				t.Fatalf("%s: a refused rollback changed what is live: current %s", s.name, r.current())
			}
			continue
		}
		want := shas[s.want]
		if err != nil || r.current() != want || res.Commit != want {
			t.Fatalf("%s: rollback: %+v %v; current %s, want %s", s.name, res, err, r.current(), want[:7])
		}
		if row := r.row(res.DeployID); row.Kind != ledger.KindRollback || row.Outcome != ledger.Succeeded || row.PreviousCommit != shas[s.prev] {
			t.Fatalf("%s: rollback row: %+v", s.name, row)
		}
		if safe, _ := r.e.Layout.SafeCommit(); safe != want {
			t.Fatalf("%s: safe after the rollback: %s, want %s", s.name, safe, want[:7])
		}
		live = want
	}
}

// TestDryRunListsTheStepsTheDeployRuns: for each shape of config, the
// steps --dry-run lists are the steps the deploy then runs, in order.
func TestDryRunListsTheStepsTheDeployRuns(t *testing.T) {
	tests := []struct {
		name, extra string
		proxied     bool
	}{
		{"services and health only", "", false},
		{"a build, a migration and data snapshots", "shared: [data]\nbuild:\n  - name: deps\n    run: \"true\"\n  - run: mkdir -p out\nmigrate:\n  run: \"true\"\nsnapshot:\n  data: [data]\n  post_deploy: true\n", false},
		{"smoke checks", "smoke:\n  - name: health again\n    url: http://127.0.0.1:{port}/health\n", false},
		{"behind the proxy", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tt.extra)
			if tt.proxied {
				r.behindProxy(nil)
			}
			// The first deploy, one of a new commit over it, then a
			// change of an env file: a reconfigure without a rebuild.
			for round := range 3 {
				switch round {
				case 1:
					r.commit("next", map[string]string{"README": "next\n"})
				case 2:
					r.writeEnv("GREETING=hi\n")
					r.reload()
				}
				plan, err := r.e.dryRun(t.Context(), Options{})
				if err != nil {
					t.Fatal(err)
				}
				res := r.mustDeploy()
				steps, err := r.db.Steps(t.Context(), res.DeployID)
				if err != nil {
					t.Fatal(err)
				}
				var ran, listed []string
				for _, s := range steps {
					ran = append(ran, s.Name)
				}
				for _, s := range plan.Plan.Steps {
					listed = append(listed, s.Name)
				}
				// A dry run's action is named as the ledger's kind.
				if want := []string{ledger.KindDeploy, ledger.KindDeploy, ledger.KindReconfigure}[round]; plan.Plan.Action != want || res.Kind != want {
					t.Fatalf("round %d: the dry run says %q, the deploy ran as %q; want %s", round+1, plan.Plan.Action, res.Kind, want)
				}
				// lock, resolve and plan are how a dry run itself begins.
				ran = ran[3:]
				if strings.Join(ran, " ") != strings.Join(listed, " ") {
					t.Fatalf("round %d:\n ran    %v\n listed %v", round+1, ran, listed)
				}
			}
		})
	}
}

// refusingSwitch is the real proxy's control API with Switch refused: the
// proxy's state file cannot be written, say.
type refusingSwitch struct {
	ProxyControl
	refuse bool
}

func (c *refusingSwitch) Switch(ctx context.Context, service, backend, release string) (proxy.SwitchResult, error) {
	if c.refuse {
		return proxy.SwitchResult{}, errors.New("write run/proxy.json: no space left on device")
	}
	return c.ProxyControl.Switch(ctx, service, backend, release)
}

// TestProxySwitchRefused: behind the proxy (the real one, in-process), a
// switch the proxy refuses fails the deploy before any user reaches the
// new instance; the old instance keeps serving through the proxy, and the
// new one is stopped.
func TestProxySwitchRefused(t *testing.T) {
	r := newRig(t, "")
	var ctl *refusingSwitch
	listen := r.behindProxy(func(c ProxyControl) ProxyControl {
		ctl = &refusingSwitch{ProxyControl: c}
		return ctl
	})

	get := func() (int, string) {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + listen + "/health")
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		return resp.StatusCode, resp.Header.Get("X-Request-Id")
	}
	good := r.mustDeploy()
	before, _, _ := ctl.Route(t.Context(), "web")
	if code, _ := get(); code != http.StatusOK || before.Backend == "" {
		t.Fatalf("through the proxy after the first deploy: %d, route %+v", code, before)
	}

	r.commit("second", map[string]string{"README": "2\n"})
	ctl.refuse = true
	res, err := r.deploy(Options{})
	var f *Failure
	if !errors.As(err, &f) || f.Step != "traffic" {
		t.Fatalf("deploy with the switch refused: %v (want a failure at traffic)", err)
	}
	if row := r.row(res.DeployID); row.Outcome != ledger.RolledBack && row.Outcome != ledger.Failed {
		t.Fatalf("ledger: %s", row.Outcome)
	}
	after, _, _ := ctl.Route(t.Context(), "web")
	if after.Backend != before.Backend || r.current() != good.Commit {
		t.Fatalf("the refused switch moved something: route %s -> %s, current %s", before.Backend, after.Backend, r.current())
	}
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("the old instance does not serve through the proxy: %d", code)
	}
	// The instance that was readied for the switch is gone.
	entries, _ := filepath.Glob(filepath.Join(r.root, "run", "web.*.pid"))
	if len(entries) != 1 {
		t.Fatalf("instances with pid files after the refused switch: %v, want only the serving one", entries)
	}
	ctl.refuse = false
	if res, err := r.deploy(Options{}); err != nil || res.Outcome != ledger.Succeeded {
		t.Fatalf("deploy once the proxy switches again: %+v %v", res, err)
	}
	if now, _, _ := ctl.Route(t.Context(), "web"); now.Backend == before.Backend {
		t.Fatal("the switch did not move the route to the new instance")
	}
}

// TestServiceGetsItsPort: a service with `port:` gets it as PORT, unless
// its env file sets PORT, which then wins; PORT is never given twice.
func TestServiceGetsItsPort(t *testing.T) {
	r := newRig(t, "")
	ports := func() []string {
		var out []string
		for _, kv := range r.e.spec(r.e.Cfg.Services["web"], vars{rel: r.e.liveRelease()}, nil).Env {
			if strings.HasPrefix(kv, "PORT=") {
				out = append(out, kv)
			}
		}
		return out
	}
	want := fmt.Sprintf("PORT=%d", r.port)
	if got := ports(); len(got) != 1 || got[0] != want {
		t.Fatalf("no PORT in the env file: %v, want [%s]", got, want)
	}
	// The running process has it (its command is `http.server $PORT`).
	r.mustDeploy()
	specs := r.e.specs(t.Context(), vars{rel: r.e.liveRelease()}, nil)
	st, err := r.e.Services.Status(t.Context(), specs[0])
	if err != nil || !st.Running {
		t.Fatalf("web: %+v %v", st, err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.PID))
	if err != nil || !strings.Contains("\x00"+string(environ)+"\x00", "\x00"+want+"\x00") {
		t.Fatalf("the service's environment lacks %s (%v)", want, err)
	}
	r.writeEnv("GREETING=hello\nPORT=9999\n")
	r.reload()
	if got := ports(); len(got) != 1 || got[0] != "PORT=9999" {
		t.Fatalf("PORT in the env file: %v, want [PORT=9999]", got)
	}
}

// TestLiveDownWithAConfigChange: the agent's watch sees a live release
// that is down even while the plan is a config change (here the host has
// no record of its config, as one deployed by an older slipway).
func TestLiveDownWithAConfigChange(t *testing.T) {
	r := newRig(t, "")
	r.mustDeploy()
	if err := os.Remove(r.e.Layout.AppliedFile()); err != nil {
		t.Fatal(err)
	}
	if why := r.e.LiveDown(t.Context()); why != "" {
		t.Fatalf("LiveDown of a healthy release: %q", why)
	}
	if _, err := r.e.StopEverything(t.Context()); err != nil {
		t.Fatal(err)
	}
	if why := r.e.LiveDown(t.Context()); why == "" {
		t.Fatal("LiveDown does not see the stopped release")
	}
}

// TestRollbackRefusesLooseEnv: the engine refuses a rollback while an env
// file lets others read it, whoever asks (the CLI checks before, the agent
// when it is asked), and changes nothing.
func TestRollbackRefusesLooseEnv(t *testing.T) {
	r := newRig(t, "")
	r.mustDeploy()
	r.commit("b", map[string]string{"README": "b\n"})
	r.mustDeploy()
	live := r.current()
	rows, err := r.db.Deploys(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(r.root, "env", "rig.env")
	if err := os.Chmod(env, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Rollback(t.Context(), RollbackOptions{}); !errors.Is(err, ErrEnvNotPrivate) || !strings.Contains(err.Error(), "chmod 0600 "+env) {
		t.Fatalf("rollback with rig.env 0644: %v; want ErrEnvNotPrivate with the chmod", err)
	}
	after, _ := r.db.Deploys(t.Context(), 0)
	if r.current() != live || len(after) != len(rows) {
		t.Fatalf("the refused rollback changed something: current %s, %d rows (were %d)", r.current(), len(after), len(rows))
	}
}
