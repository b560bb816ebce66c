//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// fleetApp's service is python3's http.server on port 8000 of every
// address: /health is a file of the repository. The hosts' repo is a path
// that exists nowhere: every commit reaches them by `fleet deploy --push`.
const fleetApp = `app: tiny
repo: /srv/git/tiny.git
branch: main
user: tiny
keep_releases: 5
env_files:
  agent: agent.env
services:
  web:
    command: /bin/sh serve.sh
    stop_timeout: 5s
health:
  url: http://127.0.0.1:8000/health
  timeout: 20s
  interval: 100ms
  settle: 1s
triggers:
  poll: 0s
  webhook:
    listen: 0.0.0.0:9009
    secret_env: SLIPWAY_WEBHOOK_SECRET
api:
  listen: 127.0.0.1:9010
  token_env: SLIPWAY_API_TOKEN
fleet:
  config: /etc/slipway/slipway.yml
  hold_ttl: 2m
  checks:
    - name: health from outside
      url: http://{{.Addr}}:8000/health
      timeout: 3s
`

// breakingApp is fleetApp with a build step that fails on a VM that has
// /etc/e2e-breaks-build: a host-specific failure.
var breakingApp = strings.Replace(fleetApp, "services:\n",
	"build:\n  - name: check\n    run: sh -c '! test -e /etc/e2e-breaks-build'\nservices:\n", 1)

// operator is the operator's machine: a checkout of the app with its
// slipway.yml, an inventory of the VMs and the env files, and the real
// slipway binary run from here.
type operator struct {
	t    *testing.T
	vms  []*VM
	dir  string // the checkout
	inv  string
	home string // $SLIPWAY_HOME: ssh sockets, fleet ledger
}

func newOperator(t *testing.T, vms []*VM) *operator {
	t.Helper()
	o := &operator{t: t, vms: vms, dir: t.TempDir(), home: t.TempDir()}
	testkit.Git(t, o.dir, "init", "-q", "-b", "main")
	testkit.WriteFile(t, filepath.Join(o.dir, "slipway.yml"), fleetApp, 0o644)
	testkit.WriteFile(t, filepath.Join(o.dir, "health"), "ok\n", 0o644)
	testkit.WriteFile(t, filepath.Join(o.dir, "serve.sh"), serve("0.0.0.0"), 0o644)
	testkit.WriteFile(t, filepath.Join(o.dir, "secrets", "agent.env"), "SLIPWAY_API_TOKEN="+apiToken+"\nSLIPWAY_WEBHOOK_SECRET="+webhookSecret+"\n", 0o600)
	testkit.WriteFile(t, filepath.Join(o.dir, ".gitignore"), "secrets/\n", 0o644)
	// An Ansible INI inventory, with the harness's ssh options as
	// ansible_ssh_common_args, as an operator would write their own.
	var b strings.Builder
	b.WriteString("[canary]\n" + vms[0].Name + "\n\n[web]\n")
	for _, vm := range vms {
		args := strings.Join(quoteEach(vm.sshOptions()), " ")
		fmt.Fprintf(&b, "%s ansible_host=%s ansible_user=root ansible_ssh_common_args=%q\n", vm.Name, vm.Addr, args)
	}
	o.inv = filepath.Join(o.dir, "hosts.ini")
	testkit.WriteFile(t, o.inv, b.String(), 0o644)
	t.Cleanup(o.disconnect)
	return o
}

// disconnect ends every master ssh connection the operator's slipway left
// (they outlive each command by fleet.ssh_persist), including those to
// hosts no longer in the inventory: a literal ControlPath names the master
// whatever the destination.
func (o *operator) disconnect() {
	socks, _ := filepath.Glob(filepath.Join(o.home, "*", "*"))
	for _, sock := range socks {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = exec.Command("ssh", "-o", "ControlPath="+sock, "-O", "exit", "master").Run()
		}
	}
}

// serve is the app's start script, serving on addr.
func serve(addr string) string {
	return "exec /usr/bin/python3 -m http.server 8000 --bind " + addr + "\n"
}

func quoteEach(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = shellQuote(w)
	}
	return out
}

// slipway runs the operator's slipway in the checkout.
func (o *operator) slipway(args ...string) (string, string, int) {
	o.t.Helper()
	bin, err := slipwayBin()
	if err != nil {
		o.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), "SLIPWAY_HOME="+o.home)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		o.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func (o *operator) mustSlipway(args ...string) string {
	o.t.Helper()
	out, errOut, code := o.slipway(args...)
	if code != 0 {
		o.t.Fatalf("slipway %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (o *operator) head() string { return testkit.Git(o.t, o.dir, "rev-parse", "HEAD") }

func (o *operator) commit(msg string, files map[string]string) string {
	o.t.Helper()
	return testkit.Commit(o.t, o.dir, msg, files)
}

// status is `slipway fleet status --json`, by host.
func (o *operator) status() map[string]hostStatus {
	o.t.Helper()
	out, errOut, _ := o.slipway("fleet", "status", "-i", o.inv, "--json")
	var sts []hostStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		o.t.Fatalf("fleet status --json: %v\n%s\n%s", err, out, errOut)
	}
	m := map[string]hostStatus{}
	for _, s := range sts {
		m[s.Host] = s
	}
	return m
}

type hostStatus struct {
	Host, Current, Safe, Slipway, Error string
	Healthy                             bool
}

// rollout is one `fleet deploy --push` with --json: its result and exit
// code.
func (o *operator) rollout(args ...string) (rolloutResult, int, string) {
	o.t.Helper()
	return o.roll(append([]string{"--push"}, args...)...)
}

// roll is one `fleet deploy` with --json and args.
func (o *operator) roll(args ...string) (rolloutResult, int, string) {
	o.t.Helper()
	start := time.Now()
	out, errOut, code := o.slipway(append([]string{"fleet", "deploy", "-i", o.inv, "--json", "--repo", o.dir}, args...)...)
	res := parseRollout(out)
	res.started, res.ended = start, time.Now()
	if res.ID == 0 {
		o.t.Fatalf("fleet deploy %v: no result (exit %d)\n%s\n%s", args, code, out, errOut)
	}
	o.t.Logf("figure: fleet deploy %v over %d VMs: %s, exit %d, %.1fs", args, len(o.vms), res.Outcome, code, time.Since(start).Seconds())
	return res, code, out + errOut
}

// parseRollout reads what `fleet deploy --json` printed.
func parseRollout(out string) rolloutResult {
	var res rolloutResult
	var batches []string
	var events []fleetEvent
	for _, line := range strings.Split(out, "\n") {
		var msg struct {
			Result *rolloutResult `json:"result"`
			Event  *fleetEvent    `json:"event"`
		}
		if json.Unmarshal([]byte(line), &msg) != nil {
			continue
		}
		if msg.Result != nil {
			res = *msg.Result
		}
		if ev := msg.Event; ev != nil {
			events = append(events, *ev)
			if ev.State == "batch" {
				batches = append(batches, fmt.Sprintf("%d/%d: %s", ev.Batch, ev.Batches, ev.Detail))
			}
		}
	}
	res.batches, res.events = batches, events
	return res
}

type rolloutResult struct {
	ID      int64
	Outcome string
	Hosts   []hostResult
	batches []string // "1/3: fa", as the events said
	events  []fleetEvent
	// When the operator's slipway started and exited.
	started, ended time.Time
}

type hostResult struct {
	Host, State, Commit, Error string
	Duration                   time.Duration `json:"duration_ns"`
	Push                       time.Duration `json:"push_ns"`
	Deploy                     time.Duration `json:"deploy_ns"`
}

// fleetEvent is a line of `fleet deploy --json`.
type fleetEvent struct {
	Time                      time.Time
	Batch, Batches            int
	Host, State, Step, Detail string
}

// expect checks each host's end state in the rollout.
func (r rolloutResult) expect(t *testing.T, what string, want map[string]string) {
	t.Helper()
	for host, w := range want {
		if got := r.state(host); got != w {
			t.Errorf("%s: %s %s, want %s", what, host, got, w)
		}
	}
}

func (r rolloutResult) state(host string) string {
	for _, h := range r.Hosts {
		if h.Host == host {
			return h.State
		}
	}
	return ""
}

// assertFleet checks that every VM is healthy on the commit want gives it.
func (o *operator) assertFleet(want func(vm string) string) {
	o.t.Helper()
	st := o.status()
	for _, vm := range o.vms {
		s := st[vm.Name]
		if w := want(vm.Name); s.Current != w || s.Safe != w || !s.Healthy {
			o.t.Errorf("%s: current %.7s safe %.7s healthy %v (%s); want healthy on %.7s", vm.Name, s.Current, s.Safe, s.Healthy, s.Error, w)
		}
	}
	if o.t.Failed() {
		o.t.FailNow()
	}
}

// TestFleet sets five VMs up from the operator's side, rolls a commit out
// in batches pushed over ssh, then rolls out commits that fail on one host:
// with revert every host ends on the previous commit, with halt no host
// starts after the failure, and every host ends healthy either way. An
// external check that fails from outside, while the host's own checks
// pass, rolls that host back.
func TestFleet(t *testing.T) {
	t.Parallel()
	vms := BootAll(t, "fa", "fb", "fc", "fd", "fe")
	o := newOperator(t, vms)
	o.commit("first", nil)

	// Setting the hosts up: first the secrets, which fleet install never
	// copies (the agent needs its token to start), then the binary, the
	// config and `slipway install`.
	env := o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets"))
	if strings.Count(env, "changed") != len(vms) {
		t.Fatalf("fleet env push:\n%s", env)
	}
	install := o.mustSlipway("fleet", "install", "-i", o.inv)
	if strings.Count(install, "changed") != len(vms) {
		t.Fatalf("first fleet install:\n%s", install)
	}
	if got := strings.TrimSpace(vms[2].MustExec(t, "stat", "-c", "%a %U", "/opt/tiny/env/agent.env")); got != "600 tiny" {
		t.Fatalf("agent.env on %s: %s, want mode 600, owned by the app's user", vms[2].Name, got)
	}
	again := o.mustSlipway("fleet", "install", "-i", o.inv)
	if strings.Contains(again, "changed") || strings.Count(again, " ok") != len(vms) {
		t.Fatalf("second fleet install changed something:\n%s", again)
	}
	if env := o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets")); strings.Contains(env, "changed") {
		t.Fatalf("second fleet env push changed something:\n%s", env)
	}

	// The first rollout: a canary, then half, then the rest.
	first := o.commit("serve", map[string]string{"index.html": "v1\n"})
	res, code, out := o.rollout("--batches", "1,50%,100%")
	if code != 0 || res.Outcome != "succeeded" {
		t.Fatalf("first rollout: exit %d, %s\n%s", code, res.Outcome, out)
	}
	if got := strings.Join(res.batches, ", "); got != "1/3: fa, 2/3: fb fc, 3/3: fd fe" {
		t.Errorf("the rollout's batches: %s\n%s", got, out)
	}
	o.assertFleet(func(string) string { return first })
	// Running it again changes no host.
	res, code, out = o.rollout("--batches", "1,50%,100%")
	for _, h := range res.Hosts {
		if h.State != "unchanged" {
			t.Fatalf("second run of the rollout: %s %s (exit %d)\n%s", h.Host, h.State, code, out)
		}
	}
	// On a terminal (script(1) gives it one) the hosts in flight are live
	// lines, redrawn in place, and the recap table follows.
	bin, _ := slipwayBin()
	tty := exec.Command("script", "-qec", strings.Join(quoteEach([]string{bin, "fleet", "deploy", "-i", o.inv, "--push", "--repo", o.dir}), " "), "/dev/null")
	tty.Dir, tty.Env = o.dir, append(os.Environ(), "SLIPWAY_HOME="+o.home)
	screen, err := tty.CombinedOutput()
	if err != nil || !strings.Contains(string(screen), "\x1b[") || !strings.Contains(string(screen), "HOST") || strings.Count(string(screen), "unchanged") < len(vms) {
		t.Fatalf("fleet deploy on a terminal: %v: want live lines, every host unchanged and the recap\n%q", err, screen)
	}

	// A push reaches fe's agent mid-rollout: fe still ends on the
	// rollout's commit, and its agent leaves the pushed tip to the fleet.
	// fe's git server has that tip; the rollout deploys the commit before.
	rolled := o.commit("the rollout's", map[string]string{"index.html": "v1.1\n"})
	tip := o.commit("pushed, not rolled out", map[string]string{"index.html": "v1.2\n"})
	fe := vms[4]
	fe.MustExec(t, "git", "init", "-q", "--bare", "/srv/git/tiny.git")
	testkit.Git(t, o.dir, "-c", "core.sshCommand="+fe.SSHCommand(), "push", "-q", "ssh://root@"+fe.Addr+"/srv/git/tiny.git", "HEAD:main")
	bin, _ = slipwayBin()
	bg := exec.Command(bin, "fleet", "deploy", "-i", o.inv, "--push", "--repo", o.dir, "--commit", rolled, "--batches", "1,50%,100%")
	bg.Dir, bg.Env = o.dir, append(os.Environ(), "SLIPWAY_HOME="+o.home)
	var bgOut strings.Builder
	bg.Stdout, bg.Stderr = &bgOut, &bgOut
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "fe held by the rollout", func() bool {
		out, _ := fe.Run(t, "slipway", "lock", "status")
		return strings.Contains(out, "held by")
	})
	githubPush(t, "http://"+fe.Addr+":9009/webhook/github", tip)
	if err := bg.Wait(); err != nil {
		t.Fatalf("the rollout with a push mid-way: %v\n%s", err, bgOut.String())
	}
	githubPush(t, "http://"+fe.Addr+":9009/webhook/github", tip) // and once it is over
	testkit.WaitFor(t, 30*time.Second, "fe's agent to leave the tip to the fleet", func() bool {
		out, _ := fe.Run(t, "journalctl", "-u", "slipway-tiny-agent", "--no-pager")
		return strings.Contains(out, "this host is in a fleet")
	})
	o.assertFleet(func(string) string { return rolled })
	var registry []struct {
		Name          string
		CurrentCommit string `json:"current_commit"`
	}
	out = fe.MustExec(t, "curl", "-s", "-H", "Authorization: Bearer "+apiToken, "http://127.0.0.1:9010/registry/vms")
	if err := json.Unmarshal([]byte(out), &registry); err != nil || len(registry) != len(vms) || registry[0].CurrentCommit != rolled {
		t.Errorf("fe's GET /registry/vms does not list the fleet's %d hosts on %.7s: %v\n%s", len(vms), rolled, err, out)
	}

	// fc cannot build the next commits: a host-specific failure.
	vms[2].MustExec(t, "touch", "/etc/e2e-breaks-build")
	o.commit("breaks on fc", map[string]string{"index.html": "v2\n", "slipway.yml": breakingApp})
	o.mustSlipway("fleet", "install", "-i", o.inv) // the config with its build step
	res, code, out = o.rollout("--batches", "1,50%,100%", "--on-fail", "revert")
	if code != 1 || res.Outcome != "reverted" {
		t.Fatalf("rollout with revert: exit %d, %s\n%s", code, res.Outcome, out)
	}
	res.expect(t, "revert", map[string]string{"fa": "reverted", "fb": "reverted", "fc": "failed", "fd": "not-started", "fe": "not-started"})
	reverted := strconv.FormatInt(res.ID, 10)
	o.assertFleet(func(string) string { return rolled })

	bad2 := o.commit("breaks on fc again", map[string]string{"index.html": "v3\n"})
	res, code, out = o.rollout("--batches", "1,50%,100%", "--on-fail", "halt")
	if code != 1 || res.Outcome != "halted" {
		t.Fatalf("rollout with halt: exit %d, %s\n%s", code, res.Outcome, out)
	}
	res.expect(t, "halt", map[string]string{"fa": "done", "fb": "done", "fc": "failed", "fd": "not-started", "fe": "not-started"})
	o.assertFleet(func(vm string) string {
		if vm == "fa" || vm == "fb" {
			return bad2
		}
		return rolled
	})
	vms[2].MustExec(t, "rm", "/etc/e2e-breaks-build")

	// A release that passes its own checks on the host (it answers on
	// 127.0.0.1) but not from outside: the external check rolls it back.
	o.commit("binds loopback only", map[string]string{"serve.sh": serve("127.0.0.1")})
	res, code, out = o.rollout("--hosts", "fd")
	if code != 1 || res.state("fd") != "failed" || !strings.Contains(out, "external check") {
		t.Fatalf("external check failing from outside: exit %d, fd %s\n%s", code, res.state("fd"), out)
	}
	if st := o.status()["fd"]; st.Current != rolled || !st.Healthy {
		t.Fatalf("fd after the external check failed: %+v, want healthy on %.7s", st, rolled)
	}

	// fleet rollback asks every host first: a commit that some host does
	// not keep changes no host.
	out, errOut, code := o.slipway("fleet", "rollback", "-i", o.inv, "--to", bad2[:10])
	if code != 1 || !strings.Contains(errOut, "no host changed") || !strings.Contains(errOut, "fc") {
		t.Fatalf("fleet rollback --to a commit fc does not keep: exit %d\n%s\n%s", code, out, errOut)
	}
	// By default it goes to the newest commit every host keeps: fa and fb
	// go back, the others are on it already.
	out, errOut, code = o.slipway("fleet", "rollback", "-i", o.inv, "--json")
	if code != 0 || !strings.Contains(out, `"kind":"rollback","commit":"`+rolled) {
		t.Fatalf("fleet rollback: exit %d\n%s\n%s", code, out, errOut)
	}
	o.assertFleet(func(string) string { return rolled })
	if _, _, code := o.slipway("fleet", "rollback", "-i", o.inv, "--to", first[:8], "--batches", "2"); code != 0 {
		t.Fatalf("fleet rollback --to the first commit: exit %d", code)
	}
	o.assertFleet(func(string) string { return first })

	// The fleet ledger has every rollout; show lists the transitions.
	hist := o.mustSlipway("fleet", "history", "-i", o.inv)
	for _, want := range []string{"succeeded", "reverted", "halted", "rollback"} {
		if !strings.Contains(hist, want) {
			t.Errorf("fleet history lacks %s:\n%s", want, hist)
		}
	}
	show := o.mustSlipway("fleet", "show", "-i", o.inv, reverted)
	if !strings.Contains(show, "reverting") || !strings.Contains(show, "fc") {
		t.Errorf("fleet show %s:\n%s", reverted, show)
	}
	// No host is left held.
	for _, vm := range vms {
		if out := vm.MustExec(t, "slipway", "lock", "status"); !strings.Contains(out, "free") {
			t.Errorf("%s after the rollouts: %s", vm.Name, out)
		}
	}
}

// TestFleetResume: the operator's slipway is killed (SIGKILL) while the
// second batch is in flight. The host in flight finishes its deploy, the
// holds on the hosts expire, the ledger says interrupted, and `fleet
// resume` goes on without touching the hosts that finished.
func TestFleetResume(t *testing.T) {
	t.Parallel()
	vms := BootAll(t, "ra", "rb", "rc")
	o := newOperator(t, vms)
	testkit.WriteFile(t, filepath.Join(o.dir, "slipway.yml"), strings.Replace(fleetApp, "hold_ttl: 2m", "hold_ttl: 15s", 1), 0o644)
	o.commit("first", nil)
	o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets"))
	o.mustSlipway("fleet", "install", "-i", o.inv)
	first := o.head()
	if res, code, out := o.rollout(); code != 0 {
		t.Fatalf("first rollout: exit %d %s\n%s", code, res.Outcome, out)
	}

	second := o.commit("second", map[string]string{"index.html": "v2\n"})
	bin, _ := slipwayBin()
	cmd := exec.Command(bin, "fleet", "deploy", "-i", o.inv, "--push", "--repo", o.dir, "--batches", "1", "--json")
	cmd.Dir, cmd.Env = o.dir, append(os.Environ(), "SLIPWAY_HOME="+o.home)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		// rb's deploy has begun its restart: kill the operator then.
		if strings.Contains(sc.Text(), `"host":"rb","state":"deploying","step":"restart"`) {
			_ = cmd.Process.Kill()
			break
		}
	}
	_ = cmd.Wait()
	// rb's own deploy does not depend on the operator: it finishes.
	testkit.WaitFor(t, 60*time.Second, "rb's deploy in flight to finish", func() bool {
		out, _ := vms[1].Run(t, "cat", "/opt/tiny/run/SAFE_COMMIT")
		return strings.TrimSpace(out) == second
	})
	if out, _ := vms[2].Run(t, "cat", "/opt/tiny/run/SAFE_COMMIT"); strings.TrimSpace(out) != first {
		t.Fatalf("rc, not started, is on %q", out)
	}
	// No host stays held: rc's hold ends with its ttl.
	testkit.WaitFor(t, 40*time.Second, "rc's hold to expire", func() bool {
		out, _ := vms[2].Run(t, "slipway", "lock", "status")
		return strings.Contains(out, "free")
	})
	var hist []struct {
		ID      int64
		Outcome string
	}
	if err := json.Unmarshal([]byte(o.mustSlipway("fleet", "history", "-i", o.inv, "--json")), &hist); err != nil || hist[0].Outcome != "interrupted" {
		t.Fatalf("fleet history after the kill: %+v %v", hist, err)
	}
	deploys := func(vm *VM) int {
		var rows []json.RawMessage
		_ = json.Unmarshal([]byte(vm.MustExec(t, "slipway", "history", "--json", "-n", "1000")), &rows)
		return len(rows)
	}
	raDeploys := deploys(vms[0])
	out, errOut, code := o.slipway("fleet", "resume", "-i", o.inv, fmt.Sprint(hist[0].ID))
	if code != 0 {
		t.Fatalf("fleet resume: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := deploys(vms[0]); n != raDeploys || !strings.Contains(errOut, "finished before the interruption") {
		t.Errorf("resume touched ra again (%d deploys in its ledger, %d before):\n%s", n, raDeploys, errOut)
	}
	o.assertFleet(func(string) string { return second })
}

// cloud is a test VM provider for fleet.snapshot: its command (a shell
// script, run by the operator's slipway) hands each request to the test,
// which snapshots a VM (a copy of what it wrote) or boots a new VM from a
// snapshot, and prints what a cloud's CLI would.
type cloud struct {
	t      *testing.T
	dir    string // requests and snapshots
	script string
	mu     sync.Mutex
	vms    map[string]*VM // by VM id
	n      int
}

const cloudScript = `#!/bin/sh
# The test cloud's CLI: the request goes to the test, which answers.
set -e
req="$CLOUD/req.$$"
printf '%s\n' "$@" >"$req.tmp"
mv "$req.tmp" "$req"
while [ ! -e "$req.done" ]; do sleep 0.05; done
cat "$req.done"
grep -q '^error' "$req.done" && exit 1
exit 0
`

func newCloud(t *testing.T, vms []*VM) *cloud {
	c := &cloud{t: t, dir: t.TempDir(), vms: map[string]*VM{}}
	for _, vm := range vms {
		c.vms["vm-"+vm.Name] = vm
	}
	c.script = filepath.Join(c.dir, "cloud")
	testkit.WriteFile(t, c.script, strings.ReplaceAll(cloudScript, "$CLOUD", shellQuote(c.dir)), 0o755)
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			reqs, _ := filepath.Glob(filepath.Join(c.dir, "req.*"))
			for _, r := range reqs {
				if strings.HasSuffix(r, ".tmp") || strings.HasSuffix(r, ".done") {
					continue
				}
				if _, err := os.Stat(r + ".done"); err == nil {
					continue
				}
				b, _ := os.ReadFile(r)
				answer := c.serve(strings.Fields(string(b)))
				_ = os.WriteFile(r+".done.tmp", []byte(answer+"\n"), 0o644)
				_ = os.Rename(r+".done.tmp", r+".done")
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return c
}

func (c *cloud) serve(args []string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case len(args) == 3 && args[0] == "create":
		vm := c.vms[args[1]]
		if vm == nil {
			return "error: no VM " + args[1]
		}
		c.n++
		id := fmt.Sprintf("snap-%d", c.n)
		if err := vm.SnapshotTo(filepath.Join(c.dir, id)); err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("Snapshot %s of %s (%s) created", id, args[1], args[2])
	case len(args) == 2 && args[0] == "restore":
		c.n++
		name := fmt.Sprintf("new%d", c.n)
		vm, err := BootFrom(c.t, name, filepath.Join(c.dir, args[1]))
		if err != nil {
			return "error: " + err.Error()
		}
		c.vms["vm-"+name] = vm
		return fmt.Sprintf("Restored %s into vm-%s, address %s", args[1], name, vm.Addr)
	}
	return fmt.Sprintf("error: usage: cloud create VMID LABEL | cloud restore ID (got %q)", args)
}

// TestFleetRestore: the fleet snapshots each VM before its deploy, with the
// cloud's own commands run from the operator's side, and records the ids
// in its ledger and in the host's. `fleet restore` makes a new VM from a
// host's snapshot, puts it in the inventory in the host's place, and
// checks it from outside.
func TestFleetRestore(t *testing.T) {
	t.Parallel()
	vms := BootAll(t, "ta", "tb")
	c := newCloud(t, vms)
	o := newOperator(t, vms)
	cfg := fleetApp + `  snapshot:
    create: ` + c.script + ` create {{.VMID}} {{.Label}}
    id_pattern: 'Snapshot (snap-[0-9]+)'
    restore: ` + c.script + ` restore {{.ID}}
    new_vm_pattern: 'into (vm-[a-z0-9]+)'
    new_addr_pattern: 'address ([0-9.]+)'
`
	testkit.WriteFile(t, filepath.Join(o.dir, "slipway.yml"), cfg, 0o644)
	inv := readFile(t, o.inv)
	for _, vm := range vms {
		inv = strings.Replace(inv, vm.Name+" ansible_host", vm.Name+" vm_id=vm-"+vm.Name+" ansible_host", 1)
	}
	testkit.WriteFile(t, o.inv, inv, 0o644)
	first := o.commit("first", nil)
	o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets"))
	o.mustSlipway("fleet", "install", "-i", o.inv)
	if res, code, out := o.rollout(); code != 0 {
		t.Fatalf("first rollout: exit %d %s\n%s", code, res.Outcome, out)
	}
	second := o.commit("second", map[string]string{"index.html": "v2\n"})
	if res, code, out := o.rollout(); code != 0 {
		t.Fatalf("second rollout: exit %d %s\n%s", code, res.Outcome, out)
	}
	var snaps []struct{ Host, ID, Label, Commit string }
	if err := json.Unmarshal([]byte(o.mustSlipway("fleet", "snapshots", "-i", o.inv, "--json")), &snaps); err != nil || len(snaps) != 4 {
		t.Fatalf("fleet snapshots: %v %+v", err, snaps)
	}
	if s := snaps[0]; s.Label != "pre-deploy" || s.Commit != first {
		t.Fatalf("the newest snapshot: %+v, want the pre-deploy one of the second rollout, on %.7s", s, first)
	}
	if out := vms[1].MustExec(t, "slipway", "snapshot", "list", "--json"); !strings.Contains(out, `"label": "pre-deploy"`) || !strings.Contains(out, `"agent": "fleet:`) {
		t.Fatalf("tb's own snapshot ledger lacks the fleet's snapshots:\n%s", out)
	}

	// tb is lost: restore its newest snapshot (before the second rollout)
	// into a new VM, which takes its place.
	out, errOut, code := o.slipway("fleet", "restore", "-i", o.inv, "tb")
	if code != 0 {
		t.Fatalf("fleet restore tb: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("fleet restore: %s", strings.TrimSpace(out))
	newInv := readFile(t, o.inv)
	if strings.Contains(newInv, "ansible_host="+vms[1].Addr+" ") || !strings.Contains(newInv, "vm_id=vm-new") {
		t.Fatalf("the inventory after the restore:\n%s", newInv)
	}
	st := o.status()
	// The snapshot was taken under rollout 2's hold; the new VM has it not.
	if out, _, _ := o.slipway("fleet", "status", "-i", o.inv); strings.Contains(out, "held by") {
		t.Fatalf("the restored VM keeps the hold it was snapshotted under:\n%s", out)
	}
	if tb := st["tb"]; tb.Current != first || !tb.Healthy {
		t.Fatalf("tb after the restore: %+v, want healthy on %.7s, as it was at the snapshot", tb, first)
	}
	if ta := st["ta"]; ta.Current != second {
		t.Fatalf("ta: %+v", ta)
	}
	// The restored host takes the next rollout as any other.
	o.assertFleet(func(vm string) string {
		if vm == "tb" {
			return first
		}
		return second
	})
	if res, code, out := o.rollout(); code != 0 || res.state("tb") != "done" {
		t.Fatalf("rollout after the restore: exit %d %+v\n%s", code, res, out)
	}
	o.assertFleet(func(string) string { return second })
}

// TestFleetBastion: the hosts are reached only through a bastion, with the
// operator's own ssh config (ProxyJump), as `ssh jb` would reach them; the
// commits get there pushed over the same hops. The hosts' sshd is
// reachable from the bastion through a relay on the host (see Relay).
func TestFleetBastion(t *testing.T) {
	t.Parallel()
	vms := BootAll(t, "ja", "jb", "jc")
	bastion, hosts := vms[0], vms[1:]
	o := newOperator(t, hosts)
	// The operator's ssh config: every host through the bastion.
	key := setup(t).key
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "Host bastion\n  HostName %s\n", bastion.Addr)
	var relayed []func() []string
	for _, h := range hosts {
		port, seen := Relay(t, bastion, h)
		relayed = append(relayed, seen)
		fmt.Fprintf(&cfg, "Host %s\n  HostName %s\n  Port %d\n  ProxyJump bastion\n", h.Name, bastion.HostAddr, port)
	}
	fmt.Fprintf(&cfg, "Host *\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  IdentityAgent none\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n", key)
	sshConfig := filepath.Join(o.dir, "ssh_config")
	testkit.WriteFile(t, sshConfig, cfg.String(), 0o600)
	var inv strings.Builder
	inv.WriteString("hosts:\n")
	for _, h := range hosts {
		fmt.Fprintf(&inv, "  - name: %s\n    ssh: %s\n    addr: %s\n    ssh_args: [-F, %s]\n", h.Name, h.Name, h.Addr, sshConfig)
	}
	o.inv = filepath.Join(o.dir, "fleet.yml")
	testkit.WriteFile(t, o.inv, inv.String(), 0o644)
	o.commit("first", nil)
	o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets"))
	o.mustSlipway("fleet", "install", "-i", o.inv)
	if res, code, out := o.rollout(); code != 0 {
		t.Fatalf("rollout through the bastion: exit %d %s\n%s", code, res.Outcome, out)
	}
	o.assertFleet(func(string) string { return o.head() })
	// Every connection to a host came from the bastion.
	for i, h := range hosts {
		from := relayed[i]()
		if len(from) == 0 || slices.ContainsFunc(from, func(a string) bool { return a != bastion.Addr }) {
			t.Errorf("%s: connections from %v, want them all from the bastion %s", h.Name, from, bastion.Addr)
		}
	}
	if n := logins(t, bastion, bastion.HostAddr); n < 2 {
		t.Errorf("the bastion saw %d logins from the operator", n)
	}
}

// logins counts the ssh logins to vm from addr, in its sshd's journal.
func logins(t *testing.T, vm *VM, addr string) int {
	t.Helper()
	log := vm.MustExec(t, "journalctl", "-u", "ssh", "--no-pager", "-o", "cat")
	return len(regexp.MustCompile(`Accepted publickey for root from `+regexp.QuoteMeta(addr)+` `).FindAllString(log, -1))
}

// TestFleetFetchAndPause: without --push each host fetches the commit the
// operator resolved from its own repo:, and a --pause soak after the canary
// stops the rollout when the canary falls ill in it.
func TestFleetFetchAndPause(t *testing.T) {
	t.Parallel()
	vms := BootAll(t, "pa", "pb", "pc")
	o := newOperator(t, vms)
	o.commit("first", nil)
	serveRepo := func() {
		for _, vm := range vms {
			vm.MustExec(t, "sh", "-c", "test -d /srv/git/tiny.git || git init -q --bare /srv/git/tiny.git")
			testkit.Git(t, o.dir, "-c", "core.sshCommand="+vm.SSHCommand(), "push", "-q", "ssh://root@"+vm.Addr+"/srv/git/tiny.git", "HEAD:main")
		}
	}
	serveRepo()
	o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets"))
	o.mustSlipway("fleet", "install", "-i", o.inv)

	first := o.head()
	res, code, out := o.roll("--batches", "1,100%")
	if code != 0 {
		t.Fatalf("a rollout that fetches: exit %d\n%s", code, out)
	}
	res.expect(t, "fetched", map[string]string{"pa": "done", "pb": "done", "pc": "done"})
	o.assertFleet(func(string) string { return first })
	for _, vm := range vms {
		if refs := vm.MustExec(t, "git", "-C", "/opt/tiny/repo.git", "for-each-ref", "refs/slipway/pushed"); strings.TrimSpace(refs) != "" {
			t.Errorf("%s: a commit was pushed, not fetched: %s", vm.Name, refs)
		}
	}

	// A host with another slipway: status shows the drift, and install
	// replaces it with the operator's.
	old := filepath.Join(t.TempDir(), "slipway")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/slipway-dev/slipway/internal/cli.Version=0.9.0", "-o", old, "../cmd/slipway")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	vms[1].CopyTo(t, old, "/usr/local/bin/slipway", 0o755)
	if st := o.status(); st["pb"].Slipway != "0.9.0" || st["pa"].Slipway != "dev" {
		t.Fatalf("fleet status: pb's slipway %q, pa's %q; want 0.9.0 and dev", st["pb"].Slipway, st["pa"].Slipway)
	}
	if out := o.mustSlipway("fleet", "status", "-i", o.inv); !strings.Contains(out, "0.9.0*") {
		t.Errorf("fleet status does not mark pb's slipway as drift:\n%s", out)
	}
	out = o.mustSlipway("fleet", "install", "-i", o.inv)
	if !strings.Contains(out, "slipway 0.9.0 replaced by the operator's dev") {
		t.Errorf("fleet install does not report the replaced slipway:\n%s", out)
	}
	if st := o.status(); st["pb"].Slipway != "dev" {
		t.Fatalf("after install, pb's slipway is %q", st["pb"].Slipway)
	}

	// The canary's health breaks in the pause after its batch: it goes
	// back to the commit it ran, no other host starts, and the rollout
	// halts at once, every host healthy.
	o.commit("second", map[string]string{"index.html": "two\n"})
	serveRepo()
	bin, _ := slipwayBin()
	cmd := exec.Command(bin, "fleet", "deploy", "-i", o.inv, "--json", "--repo", o.dir, "--batches", "1,100%", "--pause", "20s")
	cmd.Dir, cmd.Env = o.dir, append(os.Environ(), "SLIPWAY_HOME="+o.home)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	scan := bufio.NewScanner(stdout)
	broke := time.Time{}
	for scan.Scan() {
		lines.WriteString(scan.Text() + "\n")
		var msg struct{ Event *fleetEvent }
		if json.Unmarshal(scan.Bytes(), &msg) == nil && msg.Event != nil && msg.Event.Host == "pa" && msg.Event.State == "done" && broke.IsZero() {
			vms[0].MustExec(t, "sh", "-c", "rm /opt/tiny/current/health")
			broke = time.Now()
		}
	}
	err = cmd.Wait()
	res = parseRollout(lines.String())
	if broke.IsZero() {
		t.Fatalf("the canary never got done: %v\n%s%s", err, lines.String(), stderr.String())
	}
	res.expect(t, "ill in the pause", map[string]string{"pa": "failed", "pb": "not-started", "pc": "not-started"})
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 || res.Outcome != "halted" {
		t.Errorf("halted, every host healthy: want exit 1, got %v (%s)\n%s", err, res.Outcome, lines.String())
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the pause ran out (%.1fs) before the rollout stopped: it did not watch the canary", took.Seconds())
	}
	t.Logf("the pause found the canary ill %.1fs after it broke", time.Since(broke).Seconds())
	o.assertFleet(func(string) string { return first })
}

// TestFleetConnectionCap: sshd drops connections beyond MaxStartups that
// are still being set up; fleet.connections keeps the fleet's starts below
// it. Eight hosts are one VM's sshd on eight ports, which lets at most one
// connection be set up at a time: uncapped, some are dropped (the
// control); with connections: 1, none is.
func TestFleetConnectionCap(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "cap")
	conf := "MaxStartups 1:100:1\n"
	for p := 2201; p <= 2208; p++ {
		conf += fmt.Sprintf("Port %d\n", p)
	}
	vm.MustExec(t, "sh", "-c", "printf '%s' \"$1\" > /etc/ssh/sshd_config.d/cap.conf && systemctl restart ssh", "sh", conf)
	o := newOperator(t, []*VM{vm})
	var b strings.Builder
	b.WriteString("[web]\n")
	args := strings.Join(quoteEach(vm.sshOptions()), " ")
	for p := 2201; p <= 2208; p++ {
		fmt.Fprintf(&b, "h%d ansible_host=%s ansible_port=%d ansible_user=root ansible_ssh_common_args=%q\n", p, vm.Addr, p, args)
	}
	testkit.WriteFile(t, o.inv, b.String(), 0o644)
	dropped := func(connections int) []string {
		t.Helper()
		testkit.WriteFile(t, filepath.Join(o.dir, "slipway.yml"), strings.Replace(fleetApp, "  hold_ttl: 2m\n", fmt.Sprintf("  hold_ttl: 2m\n  connections: %d\n", connections), 1), 0o644)
		o.disconnect()
		var out []string
		for _, st := range o.status() { // slipway is not installed: each host says so, unless ssh failed
			if strings.Contains(st.Error, ": ssh: ") {
				out = append(out, st.Host+": "+st.Error)
			}
		}
		return out
	}
	if d := dropped(8); len(d) == 0 {
		t.Fatal("the control: eight connections set up at once, and sshd dropped none (MaxStartups 1 not in force?)")
	} else {
		t.Logf("uncapped, sshd dropped %d of 8: %s", len(d), d[0])
	}
	if d := dropped(1); len(d) != 0 {
		t.Fatalf("with connections: 1, sshd still dropped %d: %v", len(d), d)
	}
}
