package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// RolloutOptions is one `slipway fleet deploy` or `fleet rollback`.
type RolloutOptions struct {
	Kind    string // KindDeploy or KindRollback
	Commit  string // resolved by the operator
	Push    bool   // push the commit into each host's mirror first
	Repo    string // the local repository pushed from
	Batches []config.Amount
	MaxFail config.Amount
	OnFail  string // halt | revert
	Pause   time.Duration
	Force   bool // deploy even where the commit is marked bad, or live
	// Resume goes on with this interrupted rollout: hosts that finished
	// in it are not touched again.
	Resume int64
	// Stop, when it yields StopHalt or StopRevert (the dashboard's
	// buttons), ends the rollout before its next batch, as a max_fail
	// tripped would: the hosts in flight finish, then the updated hosts
	// stay (halt) or go back (revert).
	Stop <-chan string
}

// What Stop may say.
const (
	StopHalt   = "halt"
	StopRevert = "revert"
)

// Rollout kinds.
const (
	KindDeploy   = "deploy"
	KindRollback = "rollback"
)

// hostArgs is what runs on a host for its part of the rollout.
func hostArgs(opts RolloutOptions, key string) []string {
	if opts.Kind == KindRollback {
		return []string{"rollback", "--to", opts.Commit, "--wait", "--events"}
	}
	args := []string{"deploy", "--commit", opts.Commit, "--hold", key, "--events"}
	if opts.Force {
		args = append(args, "--force")
	}
	return args
}

// RolloutResult is what a rollout did to each host.
type RolloutResult struct {
	ID      int64             `json:"id"`
	Kind    string            `json:"kind"`
	Commit  string            `json:"commit"`
	Outcome string            `json:"outcome"`
	Hosts   []HostResult      `json:"hosts"`
	Error   string            `json:"error,omitempty"`
	before  map[string]string // each host's safe commit before
}

// HostResult is one host's part of a rollout.
type HostResult struct {
	Host     string        `json:"host"`
	State    string        `json:"state"`
	Commit   string        `json:"commit,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	// Push and Deploy are the parts of Duration that were the host's own
	// work: the push of the commit into its mirror, and its deploy.
	Push   time.Duration `json:"push_ns,omitempty"`
	Deploy time.Duration `json:"deploy_ns,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// ErrLocked is another rollout of the app running, here or on a host.
var ErrLocked = errors.New("locked")

// Rollout deploys opts.Commit to hosts, batch by batch. Each host runs its
// own deploy (its lock, ledger and rollback), then the external checks run
// from here; a failure rolls that host back. Past MaxFail no host starts,
// hosts in flight finish, and OnFail says whether the updated hosts stay
// (halt) or go back (revert). Every host is held for the rollout, so that
// neither its agent nor its timer deploys meanwhile. A signal (ctx) starts
// no new host; the hosts in flight finish.
func (f *Fleet) Rollout(ctx context.Context, hosts []*Host, opts RolloutOptions) (*RolloutResult, error) {
	if opts.Kind == "" {
		opts.Kind = KindDeploy
	}
	sizes := config.BatchSizes(opts.Batches, len(hosts))
	plan := Plan{Commit: opts.Commit, MaxFail: opts.MaxFail.Of(len(hosts)), OnFail: opts.OnFail, Push: opts.Push, Repo: opts.Repo, Force: opts.Force}
	if opts.Pause > 0 {
		plan.Pause = opts.Pause.String()
	}
	batches := make([][]*Host, 0, len(sizes))
	next := 0
	for _, n := range sizes {
		batch := hosts[next : next+n]
		next += n
		batches = append(batches, batch)
		var names []string
		for _, h := range batch {
			names = append(names, h.Name)
			plan.Hosts = append(plan.Hosts, h.Name)
		}
		plan.Batches = append(plan.Batches, names)
	}
	// Hosts that finished in the rollout resumed, and where each host was
	// before it began.
	finished := map[string]string{}
	var id int64
	var err error
	if opts.Resume != 0 {
		id = opts.Resume
		prev, ts, err := f.DB.Rollout(ctx, id)
		if err != nil {
			return nil, err
		}
		plan.Before = prev.Plan.Before
		for _, t := range ts {
			finished[t.Host] = t.State
		}
		for h, st := range finished {
			if st != HostDone && st != HostUnchanged {
				delete(finished, h)
			}
		}
		if err := f.DB.Reopen(ctx, id); err != nil {
			return nil, err
		}
	} else if id, err = f.DB.StartRollout(ctx, RolloutRow{App: f.Cfg.App, Kind: opts.Kind, Commit: opts.Commit, Actor: f.Actor, Plan: plan, Started: time.Now()}); err != nil {
		return nil, err
	}
	res := &RolloutResult{ID: id, Kind: opts.Kind, Commit: opts.Commit, before: map[string]string{}}
	state := map[string]*HostResult{}
	for _, h := range hosts {
		state[h.Name] = &HostResult{Host: h.Name, State: HostPending}
	}
	var mu sync.Mutex
	set := func(h *Host, st, detail string) {
		mu.Lock()
		state[h.Name].State = st
		if st == HostFailed || st == HostUnhealthy {
			state[h.Name].Error = detail
		}
		mu.Unlock()
		// Committed in the background: no host waits on the disk; the
		// rollout's end flushes them before its outcome is recorded.
		f.DB.Post(Transition{Rollout: id, Host: h.Name, State: st, Commit: opts.Commit, Detail: detail})
		f.emit(Event{Rollout: id, Host: h.Name, State: st, Commit: opts.Commit, Detail: detail})
	}
	var start []HostStatus // each host as the rollout found it, once held
	key := holdKey(f.Cfg.App, id)
	released := map[string]bool{}
	finish := func(outcome, msg string) (*RolloutResult, error) {
		res.Outcome, res.Error = outcome, msg
		for _, h := range hosts {
			res.Hosts = append(res.Hosts, *state[h.Name])
		}
		if start != nil {
			released = f.report(context.WithoutCancel(ctx), hosts, start, res, key)
		}
		if err := f.DB.Flush(context.WithoutCancel(ctx)); err != nil {
			return res, err
		}
		if err := f.DB.FinishRollout(context.WithoutCancel(ctx), id, outcome, msg); err != nil {
			return res, err
		}
		f.emit(Event{Rollout: id, State: outcome, Commit: opts.Commit, Detail: msg})
		return res, nil
	}

	// Hold every host first: a host that another rollout holds stops this
	// one before anything changes. A resumed rollout has the same key.
	sts, err := f.begin(ctx, hosts, key, id)
	if err != nil {
		f.releaseAll(hosts, key, nil)
		res, _ := finish(Failed, err.Error())
		return res, err
	}
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(f.F.HoldTTL.D() / 3)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
				_ = f.holdAll(renewCtx, hosts, key, id)
			}
		}
	}()
	defer func() {
		stopRenew()
		<-renewed
		f.releaseAll(hosts, key, released)
	}()

	// Where each host is now: a revert takes it back there (a resumed
	// rollout keeps what its hosts ran before it first began).
	for i, st := range sts {
		if st.Error != "" {
			return finish(Failed, st.Error)
		}
		name := hosts[i].Name
		if b, ok := plan.Before[name]; ok {
			res.before[name] = b
		} else {
			res.before[name] = st.Safe
		}
	}
	plan.Before = res.before
	_ = f.DB.UpdatePlan(ctx, id, plan)
	start = sts

	failures := 0
	var updated [][]*Host // per batch, the hosts that took the commit
	stopped := ""
	for bi, batch := range batches {
		if ctx.Err() != nil {
			stopped = "interrupted"
			break
		}
		if how, ok := stopAsked(opts.Stop); ok {
			stopped = "stopped by the operator (" + how + ")"
			opts.OnFail = map[string]string{StopHalt: "halt", StopRevert: "revert"}[how]
			break
		}
		f.emit(Event{Rollout: id, Batch: bi + 1, Of: len(batches), State: "batch", Detail: strings.Join(plan.Batches[bi], " ")})
		var wg sync.WaitGroup
		var took []*Host
		for _, h := range batch {
			if st, ok := finished[h.Name]; ok {
				set(h, st, "finished before the interruption")
				state[h.Name].Commit = opts.Commit
				took = append(took, h)
				continue
			}
			wg.Go(func() {
				t0 := time.Now()
				// A host in flight finishes, whatever signal comes.
				st, detail, work := f.deployHost(context.WithoutCancel(ctx), h, opts, id, key, sts[slices.Index(hosts, h)], res.before[h.Name], set)
				mu.Lock()
				state[h.Name].Duration = time.Since(t0)
				state[h.Name].Push, state[h.Name].Deploy = work.push, work.deploy
				if st == HostDone || st == HostUnchanged {
					state[h.Name].Commit = opts.Commit
					took = append(took, h)
				} else {
					failures++
				}
				mu.Unlock()
				set(h, st, detail)
			})
		}
		wg.Wait()
		updated = append(updated, took)
		if failures > plan.MaxFail {
			stopped = fmt.Sprintf("%d host(s) failed, more than max_fail %d", failures, plan.MaxFail)
			break
		}
		if opts.Pause > 0 && bi < len(batches)-1 {
			if bad := f.soak(ctx, updatedHosts(updated), opts.Pause, plan.MaxFail-failures, res.before, opts.Commit, set); bad > 0 {
				failures += bad
				if failures > plan.MaxFail {
					stopped = fmt.Sprintf("%d host(s) failed, more than max_fail %d (unhealthy in the pause)", failures, plan.MaxFail)
					break
				}
			}
		}
	}
	if ctx.Err() != nil && stopped == "" && !allFinished(state) {
		stopped = "interrupted"
	}
	if stopped == "interrupted" {
		for _, h := range hosts {
			if state[h.Name].State == HostPending {
				set(h, HostNotStarted, "interrupted: `slipway fleet resume "+strconv.FormatInt(id, 10)+"` goes on")
			}
		}
		return finish(Interrupted, "interrupted before every host was done: `slipway fleet resume "+strconv.FormatInt(id, 10)+"` goes on")
	}
	for _, h := range hosts {
		if state[h.Name].State == HostPending {
			set(h, HostNotStarted, stopped)
		}
	}
	outcome := Succeeded
	if stopped != "" {
		outcome = Halted
		if opts.OnFail == "revert" {
			outcome = Reverted
			f.revert(ctx, updated, res.before, key, set)
		}
	}
	for _, h := range hosts {
		if st := state[h.Name].State; st == HostUnhealthy {
			outcome = Failed
		}
	}
	return finish(outcome, stopped)
}

// stopAsked says whether stop has asked for a halt or a revert.
func stopAsked(stop <-chan string) (string, bool) {
	select {
	case how := <-stop:
		return how, how == StopHalt || how == StopRevert
	default:
		return "", false
	}
}

func allFinished(state map[string]*HostResult) bool {
	for _, st := range state {
		if st.State == HostPending {
			return false
		}
	}
	return true
}

func updatedHosts(batches [][]*Host) []*Host {
	var out []*Host
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}

// hostWork is how long a host's own work took in its deploy.
type hostWork struct{ push, deploy time.Duration }

// deployHost deploys (or rolls back to) the commit on h, which was as
// found when the rollout began, and checks it from outside; on a failed
// check it rolls h back to before. It returns h's end state.
func (f *Fleet) deployHost(ctx context.Context, h *Host, opts RolloutOptions, id int64, key string, found HostStatus, before string, set func(*Host, string, string)) (string, string, hostWork) {
	var work hostWork
	set(h, HostDeploying, "")
	sn := f.F.Snapshot
	if sn != nil && sn.Create != "" && opts.Kind == KindDeploy {
		// No deploy without its restore point.
		snap, err := f.takeSnapshot(ctx, h, id, LabelPreDeploy, before)
		if err != nil {
			return HostFailed, err.Error() + "; not deployed", work
		}
		f.emit(Event{Rollout: id, Host: h.Name, State: HostDeploying, Detail: "pre-deploy snapshot " + snap})
	}
	if opts.Kind == KindRollback && found.Current == opts.Commit && found.Safe == opts.Commit {
		if st := f.Status(ctx, h); st.Error == "" && st.Current == opts.Commit && st.Safe == opts.Commit && st.Healthy {
			return HostUnchanged, "already on " + short(opts.Commit), work
		}
	}
	if opts.Push {
		t0 := time.Now()
		err := f.Push(ctx, h, opts.Repo, opts.Commit)
		work.push = time.Since(t0)
		if err != nil {
			return HostFailed, err.Error(), work
		}
	}
	var sum *deploy.Summary
	t0 := time.Now()
	_, err := f.remote(ctx, h, nil, func(line string) {
		var msg struct {
			Event  *deploy.Event   `json:"event"`
			Result *deploy.Summary `json:"result"`
		}
		if json.Unmarshal([]byte(line), &msg) != nil {
			return
		}
		if msg.Event != nil && msg.Event.Phase == "start" {
			f.emit(Event{Host: h.Name, State: HostDeploying, Step: msg.Event.Step})
		}
		if msg.Result != nil {
			sum = msg.Result
		}
	}, hostArgs(opts, key)...)
	work.deploy = time.Since(t0)
	if err != nil {
		detail := err.Error()
		if sum != nil {
			detail = h.Name + ": " + describeSummary(*sum) + f.deployLogTail(ctx, h, sum.ID)
			if sum.RolledBack || sum.ExitCode == 1 || sum.ExitCode == 3 {
				return HostFailed, detail, work
			}
		}
		return HostUnhealthy, detail, work
	}
	unchanged := sum != nil && sum.Outcome == string(ledger.Skipped)
	if st, detail := f.took(ctx, h, opts.Commit, sum); st != "" {
		return st, detail, work
	}
	set(h, HostChecking, "")
	if err := f.check(ctx, h); err != nil {
		// The host proved itself, but not from outside: back to before.
		if before == "" || before == opts.Commit {
			return HostUnhealthy, err.Error() + "; no earlier commit to roll back to", work
		}
		if rerr := f.rollbackHost(ctx, h, before); rerr != nil {
			return HostUnhealthy, err.Error() + "; rollback: " + rerr.Error(), work
		}
		return HostFailed, err.Error() + "; rolled back to " + short(before), work
	}
	if unchanged {
		return HostUnchanged, "already on " + short(opts.Commit), work
	}
	if sn != nil && sn.Create != "" && sn.PostDeploy && opts.Kind == KindDeploy {
		// The deploy stands whatever happens here.
		snap, err := f.takeSnapshot(ctx, h, id, LabelPostDeploy, opts.Commit)
		if err != nil {
			return HostDone, "post-deploy snapshot failed: " + err.Error(), work
		}
		return HostDone, "post-deploy snapshot " + snap, work
	}
	return HostDone, "", work
}

// took checks that h runs commit, safe and healthy, after a deploy that
// exited 0 and said sum. A deploy that succeeded on the commit proved it;
// any other may have skipped it (marked bad on this host), and h is
// asked. It returns h's end state, or "" when h took the commit.
func (f *Fleet) took(ctx context.Context, h *Host, commit string, sum *deploy.Summary) (string, string) {
	if sum != nil && sum.Outcome == string(ledger.Succeeded) && sum.Commit == commit {
		return "", ""
	}
	st := f.Status(ctx, h)
	switch {
	case st.Error != "":
		return HostUnhealthy, st.Error
	case st.Current != commit || st.Safe != commit:
		msg := "it did not take the commit"
		if sum != nil {
			msg = sum.Message
		}
		return HostFailed, h.Name + ": " + msg + " (current " + short(st.Current) + "; --force deploys a commit marked bad)"
	case !st.Healthy:
		return HostUnhealthy, h.Name + ": unhealthy after its deploy"
	}
	return "", ""
}

// deployLogTail is the end of deploy id's output on h, for a failure's
// message.
func (f *Fleet) deployLogTail(ctx context.Context, h *Host, id int64) string {
	if id == 0 {
		return ""
	}
	out, err := f.remote(ctx, h, nil, nil, "logs", strconv.FormatInt(id, 10))
	if err != nil || strings.TrimSpace(out) == "" {
		return ""
	}
	return "\nthe end of its deploy log (`slipway logs " + strconv.FormatInt(id, 10) + "` on " + h.Name + "):\n" + lastLines(out, 10)
}

func describeSummary(s deploy.Summary) string {
	parts := []string{s.Outcome}
	if s.FailedStep != "" {
		parts = append(parts, "at step "+s.FailedStep)
	}
	if s.Error != "" {
		parts = append(parts, s.Error)
	} else if s.Message != "" {
		parts = append(parts, s.Message)
	}
	return strings.Join(parts, ": ")
}

func (f *Fleet) rollbackHost(ctx context.Context, h *Host, to string) error {
	_, err := f.remote(ctx, h, nil, nil, "rollback", "--to", to, "--wait", "--json")
	return err
}

// check runs the fleet's external checks against h from here.
func (f *Fleet) check(ctx context.Context, h *Host) error {
	for _, c := range f.F.Checks {
		t, err := config.FleetTemplate(c.URL)
		if err != nil {
			return err
		}
		var u strings.Builder
		if err := t.Execute(&u, h.Values); err != nil {
			return err
		}
		if err := httpCheck(ctx, c, u.String()); err != nil {
			return fmt.Errorf("%s: external check %s: %w", h.Name, c.Name, err)
		}
	}
	return nil
}

func httpCheck(ctx context.Context, c config.FleetCheck, url string) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != c.ExpectStatus {
		return fmt.Errorf("GET %s: %d, want %d", url, resp.StatusCode, c.ExpectStatus)
	}
	if c.ExpectBody != "" && !strings.Contains(string(body), c.ExpectBody) {
		return fmt.Errorf("GET %s: the body lacks %q", url, c.ExpectBody)
	}
	return nil
}

// soak watches hosts for pause: each must stay healthy, on its own
// checks and from outside. One that does not is rolled back to what it ran
// before, as after a failed external check. It returns how many fell ill,
// as soon as more than allowed did.
func (f *Fleet) soak(ctx context.Context, hosts []*Host, pause time.Duration, allowed int, before map[string]string, commit string, set func(*Host, string, string)) int {
	deadline := time.Now().Add(pause)
	bad := map[string]bool{}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for i, st := range f.StatusAll(ctx, hosts) {
			h := hosts[i]
			if bad[h.Name] {
				continue
			}
			err := errors.New(st.Error)
			if st.Error == "" && !st.Healthy {
				err = errors.New("unhealthy in the pause: " + st.HealthErr)
			} else if st.Error == "" {
				err = f.check(ctx, h)
			}
			if err == nil {
				continue
			}
			bad[h.Name] = true
			msg := h.Name + ": " + err.Error()
			switch to := before[h.Name]; {
			case to == "" || to == commit:
				set(h, HostUnhealthy, msg+"; no earlier commit to roll back to")
			case f.rollbackHost(context.WithoutCancel(ctx), h, to) != nil:
				set(h, HostUnhealthy, msg+"; its rollback failed")
			default:
				set(h, HostFailed, msg+"; rolled back to "+short(to))
			}
		}
		if len(bad) > allowed {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Second, time.Until(deadline))):
		}
	}
	return len(bad)
}

// revert rolls the updated hosts back, the last batch first.
func (f *Fleet) revert(ctx context.Context, updated [][]*Host, before map[string]string, key string, set func(*Host, string, string)) {
	for _, batch := range slices.Backward(updated) {
		var wg sync.WaitGroup
		for _, h := range batch {
			to := before[h.Name]
			if to == "" {
				continue
			}
			wg.Go(func() {
				set(h, HostReverting, "to "+short(to))
				if err := f.rollbackHost(context.WithoutCancel(ctx), h, to); err != nil {
					set(h, HostUnhealthy, "revert: "+err.Error())
					return
				}
				set(h, HostReverted, "back on "+short(to))
			})
		}
		wg.Wait()
	}
}

// begin holds every host for key, at once; each says what it holds (its
// live release, safe commit and slipway version, not its health). A host
// that another rollout holds makes it ErrLocked; the caller releases what
// was held either way.
func (f *Fleet) begin(ctx context.Context, hosts []*Host, key string, id int64) ([]HostStatus, error) {
	sts := make([]HostStatus, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			out, err := f.remote(ctx, h, nil, nil, "lock", "hold", "--key", key, "--ttl", f.F.HoldTTL.D().String(),
				"-m", f.holdMessage(id), "--wait", "--json")
			var re *RemoteError
			switch {
			case errors.As(err, &re) && re.Code == exitcode.Usage && strings.Contains(re.Stderr, "unknown flag"):
				errs[i] = fmt.Errorf("%s: its slipway is older than this one (%s): `slipway fleet install` updates it", h.Name, f.Version)
			case errors.As(err, &re) && re.Code != 127:
				errs[i] = err
			default:
				sts[i] = f.readStatus(ctx, h, out, err)
			}
		})
	}
	wg.Wait()
	if err := holdError(errs); err != nil {
		return nil, err
	}
	return sts, nil
}

// holdAll renews every host's hold for key, at once.
func (f *Fleet) holdAll(ctx context.Context, hosts []*Host, key string, id int64) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			_, errs[i] = f.remote(ctx, h, nil, nil, "lock", "hold", "--key", key, "--ttl", f.F.HoldTTL.D().String(),
				"-m", f.holdMessage(id), "--wait")
		})
	}
	wg.Wait()
	return holdError(errs)
}

func (f *Fleet) holdMessage(id int64) string {
	return "fleet rollout " + strconv.FormatInt(id, 10) + " by " + f.Actor
}

// holdError is ErrLocked when a host's hold failed because another holds
// it, else the hosts' errors.
func holdError(errs []error) error {
	for _, err := range errs {
		var re *RemoteError
		if errors.As(err, &re) && re.Code == exitcode.Locked {
			return fmt.Errorf("%w: %s", ErrLocked, strings.TrimSpace(lastLines(re.Stderr, 2)))
		}
	}
	return errors.Join(errs...)
}

// releaseAll ends the holds of key on hosts, but those in done.
func (f *Fleet) releaseAll(hosts []*Host, key string, done map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range hosts {
		if done[h.Name] {
			continue
		}
		wg.Go(func() { _, _ = f.remote(ctx, h, nil, nil, "lock", "release", "--key", key, "--wait") })
	}
	wg.Wait()
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// report tells every host how the fleet stands and ends its hold, in one
// round trip: the host is one of the fleet (its agent and timer leave new
// tips to the fleet), and the hosts' versions as the rollout left them
// (GET /registry/vms). Hosts that did not end as planned are asked. It
// returns the hosts whose hold it ended.
func (f *Fleet) report(ctx context.Context, hosts []*Host, start []HostStatus, res *RolloutResult, key string) map[string]bool {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sts := slices.Clone(start)
	var wg sync.WaitGroup
	for i, hr := range res.Hosts {
		switch hr.State {
		case HostDone, HostUnchanged:
			sts[i].Current, sts[i].Safe = res.Commit, res.Commit
		case HostPending, HostNotStarted:
		default:
			wg.Go(func() { sts[i] = f.Status(ctx, hosts[i]) })
		}
	}
	wg.Wait()
	var vms []ledger.VM
	now := time.Now()
	for i, st := range sts {
		if st.Error == "" {
			vms = append(vms, ledger.VM{Name: hosts[i].Name, Address: hosts[i].Values.Addr, App: f.Cfg.App,
				CurrentCommit: st.Current, SafeCommit: st.Safe, Version: st.Slipway, Seen: now})
		}
	}
	body, err := json.Marshal(map[string]any{"rollout": res.ID, "commit": res.Commit, "by": f.Actor, "at": now, "vms": vms})
	if err != nil {
		return nil
	}
	ended := make([]bool, len(hosts))
	for i, h := range hosts {
		wg.Go(func() {
			_, err := f.remote(ctx, h, bytes.NewReader(body), nil, "registry", "put", "--release", key)
			ended[i] = err == nil
		})
	}
	wg.Wait()
	out := map[string]bool{}
	for i, h := range hosts {
		if ended[i] {
			out[h.Name] = true
		}
	}
	return out
}

// holdKey is the key of rollout id's holds on its hosts.
func holdKey(app string, id int64) string { return fmt.Sprintf("fleet-%s-%d", app, id) }
