package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/fleet"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/lock"
)

// fleetFlags are what every fleet command takes.
type fleetFlags struct {
	inventory string
	hosts     []string
	tags      []string
	asJSON    bool
}

// fleetApp is the operator's side, opened for one command.
type fleetApp struct {
	f     *fleet.Fleet
	cfg   *config.Config
	inv   *fleet.Inventory
	hosts []*fleet.Host
	home  string // ~/.slipway, or $SLIPWAY_HOME
}

// close closes the ledger; the hosts' master ssh connections stay up for
// fleet.ssh_persist, for the next command (`fleet disconnect` ends them).
func (a *fleetApp) close() {
	_ = a.f.DB.Close()
}

func newFleetCmd(g *globals) *cobra.Command {
	ff := &fleetFlags{}
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Roll the app out across many hosts over ssh, from this machine",
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&ff.inventory, "inventory", "i", "", "the inventory: slipway's YAML, or an Ansible INI or YAML inventory (default: fleet.inventory)")
	pf.StringSliceVar(&ff.hosts, "hosts", nil, "only these hosts (comma-separated)")
	pf.StringSliceVar(&ff.tags, "tag", nil, "only hosts with this tag (an Ansible group); repeat for all of several")
	pf.BoolVar(&ff.asJSON, "json", false, "print JSON (deploy: NDJSON events, then the result)")
	cmd.AddCommand(newFleetInstallCmd(g, ff), newFleetEnvCmd(g, ff), newFleetDeployCmd(g, ff), newFleetRollbackCmd(g, ff),
		newFleetResumeCmd(g, ff), newFleetStatusCmd(g, ff), newFleetHistoryCmd(g, ff), newFleetShowCmd(g, ff),
		newFleetSnapshotsCmd(g, ff), newFleetRestoreCmd(g, ff), newFleetDisconnectCmd(g, ff), newFleetUICmd(g, ff))
	return cmd
}

// openFleet loads the config, its fleet section and the inventory, and
// opens the transport and the fleet ledger.
func (g *globals) openFleet(ff *fleetFlags) (*fleetApp, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	fc := cfg.Fleet
	if fc == nil {
		fc = &config.Fleet{}
		if err := config.ApplyFleetDefaults(fc); err != nil {
			return nil, err
		}
	}
	inv := ff.inventory
	if inv == "" && fc.Inventory != "" {
		inv = fc.Inventory
		if !filepath.IsAbs(inv) {
			inv = filepath.Join(filepath.Dir(cfg.Path), inv)
		}
	}
	if inv == "" {
		return nil, usageError{Err: errors.New("no inventory: pass -i FILE or set fleet.inventory")}
	}
	in, err := fleet.LoadInventory(inv)
	if err != nil {
		return nil, usageError{Err: err}
	}
	hosts, err := in.Select(ff.hosts, ff.tags)
	if err != nil {
		return nil, usageError{Err: err}
	}
	home := os.Getenv("SLIPWAY_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		home = filepath.Join(h, ".slipway")
	}
	ssh, err := fleet.NewSSH(filepath.Join(home, "ssh"), fc.Connections, fc.SSHPersist.D())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(home, "fleet", cfg.App)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := fleet.OpenLedger(filepath.Join(dir, "fleet.db"))
	if err != nil {
		return nil, err
	}
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return &fleetApp{cfg: cfg, inv: in, hosts: hosts, home: dir, f: &fleet.Fleet{Cfg: cfg, F: fc, SSH: ssh, DB: db,
		Actor: actor(), Version: Version, LocalBinary: bin}}, nil
}

// perHost runs fn on every host at once and prints a line per host, or
// JSON; it exits 1 when a host failed.
func perHost(g *globals, a *fleetApp, asJSON bool, fn func(*fleet.Host) fleet.InstallResult) error {
	out := make([]fleet.InstallResult, len(a.hosts))
	var wg sync.WaitGroup
	for i, h := range a.hosts {
		wg.Go(func() { out[i] = fn(h) })
	}
	wg.Wait()
	failed := 0
	for _, r := range out {
		if r.Outcome == "failed" {
			failed++
		}
	}
	if asJSON {
		printJSON(g, out)
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		for _, r := range out {
			detail := strings.Join(r.Changes, "; ")
			if r.Error != "" {
				detail = r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Host, r.Outcome, detail)
		}
		_ = tw.Flush()
	}
	if failed > 0 {
		return exitError(exitcode.Failed)
	}
	return nil
}

func newFleetInstallCmd(g *globals, ff *fleetFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "install",
		Short: "Put this slipway and the app's config on each host, then run `slipway install` there",
		Long: `install copies this very slipway binary to fleet.binary and slipway.yml to
fleet.config on each host when they differ, then runs ` + "`slipway install`" + ` there.
It reports per host: ok (nothing to change), changed, or failed. Env files are
never copied: use ` + "`fleet env push`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			ctx := signalContext(cmd)
			return perHost(g, a, ff.asJSON, func(h *fleet.Host) fleet.InstallResult { return a.f.Install(ctx, h, a.cfg.Path) })
		},
	}
}

func newFleetEnvCmd(g *globals, ff *fleetFlags) *cobra.Command {
	var from string
	env := &cobra.Command{Use: "env", Short: "The hosts' env files (secrets)"}
	push := &cobra.Command{
		Use:   "push --from DIR",
		Short: "Copy the env files named in env_files from DIR to each host (mode 0600, never in argv or logs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return usageError{Err: errors.New("--from DIR: the directory holding the env files")}
			}
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			ctx := signalContext(cmd)
			return perHost(g, a, ff.asJSON, func(h *fleet.Host) fleet.InstallResult { return a.f.PushEnv(ctx, h, from) })
		},
	}
	push.Flags().StringVar(&from, "from", "", "the directory holding the env files")
	env.AddCommand(push)
	return env
}

// rolloutFlags are the flags of the commands that roll out.
type rolloutFlags struct {
	batches, maxFail, onFail string
	pause                    time.Duration
}

func (rf *rolloutFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&rf.batches, "batches", "", "batch sizes, Ansible's serial list (default: fleet.batches, else 1,100%)")
	f.StringVar(&rf.maxFail, "max-fail", "", "hosts that may fail before no new host starts: N or N% (default: fleet.max_fail, else 0)")
	f.StringVar(&rf.onFail, "on-fail", "", "past max-fail: halt (updated hosts stay) or revert (they go back); default fleet.on_fail, else halt")
	f.DurationVar(&rf.pause, "pause", 0, "soak after each batch: every updated host must stay healthy (default: fleet.pause)")
}

// options are the rollout's options from the flags over the fleet section.
func (rf *rolloutFlags) options(cmd *cobra.Command, fc *config.Fleet) (fleet.RolloutOptions, error) {
	opts := fleet.RolloutOptions{OnFail: fc.OnFail, Pause: fc.Pause.D()}
	if cmd.Flags().Changed("pause") {
		opts.Pause = rf.pause
	}
	if rf.onFail != "" {
		if rf.onFail != "halt" && rf.onFail != "revert" {
			return opts, usageError{Err: fmt.Errorf("--on-fail %q: use halt or revert", rf.onFail)}
		}
		opts.OnFail = rf.onFail
	}
	var err error
	if opts.Batches, err = config.ParseBatches(cmp.Or(rf.batches, fc.Batches)); err != nil {
		return opts, usageError{Err: err}
	}
	if opts.MaxFail, err = config.ParseAmount(cmp.Or(rf.maxFail, fc.MaxFail)); err != nil {
		return opts, usageError{Err: fmt.Errorf("--max-fail: %w", err)}
	}
	return opts, nil
}

// rolloutLock is the operator's side of "one rollout of an app at a
// time" (the hosts' holds are the other): a second one exits 3.
func (a *fleetApp) rolloutLock(ctx context.Context) (*lock.Lock, error) {
	held, err := lock.Acquire(ctx, filepath.Join(a.home, "rollout.lock"), holderNow("fleet"), false, false)
	if err != nil {
		return nil, err
	}
	// Rollouts left running: nothing runs them any more.
	if err := a.f.DB.MarkInterrupted(ctx); err != nil {
		_ = held.Release()
		return nil, err
	}
	return held, nil
}

// openRollout opens the fleet for a command about rollout arg.
func (g *globals) openRollout(ff *fleetFlags, arg string) (*fleetApp, int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil {
		return nil, 0, usageError{Err: fmt.Errorf("%q is not a rollout id", arg)}
	}
	a, err := g.openFleet(ff)
	return a, id, err
}

// settle marks the rollouts left running interrupted when no rollout
// runs now, so that the ledger tells the truth.
func (a *fleetApp) settle(cmd *cobra.Command) {
	if held, err := a.rolloutLock(signalContext(cmd)); err == nil {
		_ = held.Release()
	}
}

// roll runs a rollout under the rollout lock and reports it.
func (g *globals) roll(cmd *cobra.Command, a *fleetApp, asJSON bool, opts fleet.RolloutOptions) error {
	held, err := a.rolloutLock(signalContext(cmd))
	if err != nil {
		return err
	}
	defer func() { _ = held.Release() }()
	a.f.Events = fleetPrinter(g, asJSON)
	res, err := a.f.Rollout(signalContext(cmd), a.hosts, opts)
	if res != nil {
		printRollout(g, res, asJSON)
	}
	switch {
	case errors.Is(err, fleet.ErrLocked):
		fmt.Fprintf(g.stderr, "error: %v\n", err)
		return exitError(exitcode.Locked)
	case err != nil:
		return err
	}
	return exitError(rolloutExit(res.Outcome))
}

func newFleetDeployCmd(g *globals, ff *fleetFlags) *cobra.Command {
	var commit, ref, repo string
	var push, force bool
	rf := &rolloutFlags{}
	cmd := &cobra.Command{
		Use:   "deploy [--commit SHA | --ref REF] [--batches 1,25%,100%] [--max-fail N|N%] [--on-fail halt|revert] [--pause 30s] [--push]",
		Short: "Deploy one commit to the hosts, batch by batch, each proven by its own checks and from outside",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if commit != "" && ref != "" {
				return usageError{Err: errors.New("--commit and --ref are exclusive")}
			}
			if commit != "" && !git.IsCommitID(commit) {
				return usageError{Err: fmt.Errorf("--commit %q is not a commit id", commit)}
			}
			if ref != "" {
				if err := git.CheckRefName(ref); err != nil {
					return usageError{Err: fmt.Errorf("--ref: %w", err)}
				}
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
			opts.Kind, opts.Push, opts.Force = fleet.KindDeploy, push, force
			// The commit is resolved once, here, for every host.
			opts.Repo = cmp.Or(repo, a.cfg.Repo)
			if opts.Commit, err = fleet.Resolve(signalContext(cmd), opts.Repo, cmp.Or(commit, ref, a.cfg.Branch)); err != nil {
				return usageError{Err: fmt.Errorf("%w (--repo names the local repository to resolve in and push from)", err)}
			}
			return g.roll(cmd, a, ff.asJSON, opts)
		},
	}
	rf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&commit, "commit", "", "deploy this commit")
	f.StringVar(&ref, "ref", "", "deploy this branch or tag (default: the config's branch)")
	f.BoolVar(&force, "force", false, "deploy even on hosts where the commit is marked bad (and again where it is live)")
	f.BoolVar(&push, "push", false, "push the commit into each host's mirror over ssh: the hosts need no access to repo")
	f.StringVar(&repo, "repo", "", "the local repository the commit is resolved in (and pushed from); default: the config's repo")
	return cmd
}

func newFleetRollbackCmd(g *globals, ff *fleetFlags) *cobra.Command {
	var to string
	rf := &rolloutFlags{}
	cmd := &cobra.Command{
		Use:   "rollback [--to SHA] [--batches ...]",
		Short: "Roll every host back to a release it keeps (default: the newest one all keep), without rebuilding",
		Long: `rollback asks every host which good releases it keeps before any host
changes. --to names the commit; without it, the target is the newest commit
that every host keeps as a good release and that not all of them run now.
Hosts already on it are left alone; the others roll back in batches.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != "" && !git.IsCommitID(to) {
				return usageError{Err: fmt.Errorf("--to %q is not a commit id", to)}
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
			opts.Kind = fleet.KindRollback
			if opts.Commit, err = fleet.RollbackTarget(a.f.StatusAll(signalContext(cmd), a.hosts), to); err != nil {
				fmt.Fprintf(g.stderr, "error: %v\n", err)
				return exitError(exitcode.Failed)
			}
			return g.roll(cmd, a, ff.asJSON, opts)
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&to, "to", "", "roll back to this commit's kept release on every host")
	return cmd
}

func newFleetResumeCmd(g *globals, ff *fleetFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "resume ID",
		Short: "Go on with an interrupted rollout: its hosts that finished are left alone",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, id, err := g.openRollout(ff, args[0])
			if err != nil {
				return err
			}
			defer a.close()
			held, err := a.rolloutLock(signalContext(cmd)) // marks it interrupted if it was left running
			if err != nil {
				return err
			}
			r, _, err := a.f.DB.Rollout(signalContext(cmd), id)
			_ = held.Release()
			if err != nil {
				return usageError{Err: err}
			}
			if r.Outcome != fleet.Interrupted {
				return usageError{Err: fmt.Errorf("rollout %d %s: only an interrupted rollout is resumed", id, r.Outcome)}
			}
			// The same hosts, in the same batches, from the rollout's plan.
			byName := map[string]*fleet.Host{}
			for _, h := range a.hosts {
				byName[h.Name] = h
			}
			a.hosts = a.hosts[:0]
			var sizes []string
			for _, b := range r.Plan.Batches {
				for _, n := range b {
					if byName[n] == nil {
						return usageError{Err: fmt.Errorf("rollout %d's host %s is not in the inventory (or not selected)", id, n)}
					}
					a.hosts = append(a.hosts, byName[n])
				}
				sizes = append(sizes, strconv.Itoa(len(b)))
			}
			opts := fleet.RolloutOptions{Kind: r.Kind, Commit: r.Commit, Push: r.Plan.Push, Repo: r.Plan.Repo, Force: r.Plan.Force,
				OnFail: r.Plan.OnFail, MaxFail: config.Amount{N: r.Plan.MaxFail}, Resume: id}
			if opts.Batches, err = config.ParseBatches(strings.Join(sizes, ",")); err != nil {
				return err
			}
			if r.Plan.Pause != "" {
				opts.Pause, _ = time.ParseDuration(r.Plan.Pause)
			}
			return g.roll(cmd, a, ff.asJSON, opts)
		},
	}
}

// rolloutExit is a rollout outcome's exit code.
func rolloutExit(outcome string) int {
	switch outcome {
	case fleet.Succeeded:
		return exitcode.OK
	case fleet.Halted, fleet.Reverted:
		return exitcode.Failed
	case fleet.Interrupted:
		return exitcode.Interrupted
	}
	return exitcode.RollbackFailed
}

// fleetPrinter prints a rollout's progress: NDJSON with --json; on a
// terminal, the live view; else a line per batch and per host transition.
func fleetPrinter(g *globals, asJSON bool) func(fleet.Event) {
	if width, ok := terminalWidth(g.stderr); ok && !asJSON {
		return newLiveView(g.stderr, width).event
	}
	var mu sync.Mutex
	enc := json.NewEncoder(g.stdout)
	return func(ev fleet.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case asJSON:
			_ = enc.Encode(struct {
				Event fleet.Event `json:"event"`
			}{ev})
		case ev.State == "batch":
			fmt.Fprintf(g.stderr, "batch %d/%d: %s\n", ev.Batch, ev.Of, ev.Detail)
		case ev.Host == "":
			fmt.Fprintf(g.stderr, "rollout %d: %s %s\n", ev.Rollout, ev.State, ev.Detail)
		default:
			fmt.Fprintln(g.stderr, hostLine(ev))
		}
	}
}

func printRollout(g *globals, r *fleet.RolloutResult, asJSON bool) {
	if asJSON {
		_ = json.NewEncoder(g.stdout).Encode(struct {
			Result *fleet.RolloutResult `json:"result"`
		}{r})
		return
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tOUTCOME\tDURATION\tCOMMIT\tERROR")
	for _, h := range r.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Host, h.State, h.Duration.Round(100*time.Millisecond), orDash(short(h.Commit)), oneLine(h.Error))
	}
	_ = tw.Flush()
	fmt.Fprintf(g.stdout, "rollout %d: %s", r.ID, r.Outcome)
	if r.Error != "" {
		fmt.Fprintf(g.stdout, " (%s)", r.Error)
	}
	fmt.Fprintln(g.stdout)
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", " | ") }

func newFleetStatusCmd(g *globals, ff *fleetFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Each host's current and safe commit, health, agent, lock and slipway version; drift marked *",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			sts := a.f.StatusAll(signalContext(cmd), a.hosts)
			if ff.asJSON {
				printJSON(g, sts)
			} else {
				printFleetStatus(g.stdout, sts)
			}
			for _, st := range sts {
				if st.Error != "" || !st.Healthy {
					return exitError(exitcode.RollbackFailed)
				}
			}
			return nil
		},
	}
}

func newFleetDisconnectCmd(g *globals, ff *fleetFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "disconnect",
		Short: "End the hosts' master ssh connections now, rather than after fleet.ssh_persist",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			a.f.SSH.Disconnect(a.hosts)
			return nil
		},
	}
}

// printFleetStatus prints a table; a value that differs from the one most
// hosts have is marked with *.
func printFleetStatus(w io.Writer, sts []fleet.HostStatus) {
	cur := fleet.Usual(sts, func(s fleet.HostStatus) string { return s.Current })
	safe := fleet.Usual(sts, func(s fleet.HostStatus) string { return s.Safe })
	ver := fleet.Usual(sts, func(s fleet.HostStatus) string { return s.Slipway })
	mark := func(v, usual string) string {
		if v != usual {
			return orDash(short(v)) + "*"
		}
		return orDash(short(v))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCURRENT\tSAFE\tHEALTH\tAGENT\tSLIPWAY\tLOCK")
	for _, st := range sts {
		if st.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\tunreachable\t-\t-\t%s\n", st.Host, oneLine(st.Error))
			continue
		}
		health := "healthy"
		if !st.Healthy {
			health = "UNHEALTHY"
		}
		agent := "-"
		if st.Agent {
			agent = "running"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Host, mark(st.Current, cur), mark(st.Safe, safe), health, agent,
			mark(st.Slipway, ver), orDash(st.Lock))
	}
	_ = tw.Flush()
}

func newFleetHistoryCmd(g *globals, ff *fleetFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history",
		Short: "The fleet ledger's rollouts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			a.settle(cmd)
			rs, err := a.f.DB.Rollouts(signalContext(cmd), limit)
			if err != nil {
				return err
			}
			if ff.asJSON {
				printJSON(g, rs)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTARTED\tKIND\tCOMMIT\tHOSTS\tOUTCOME\tBY\tERROR")
			for _, r := range rs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Started.Local().Format(time.DateTime), r.Kind,
					short(r.Commit), len(r.Plan.Hosts), r.Outcome, orDash(r.Actor), oneLine(r.Error))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 20, "how many rollouts")
	return cmd
}

func newFleetShowCmd(g *globals, ff *fleetFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "One rollout: its plan and every host's transitions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, id, err := g.openRollout(ff, args[0])
			if err != nil {
				return err
			}
			defer a.close()
			a.settle(cmd)
			r, ts, err := a.f.DB.Rollout(signalContext(cmd), id)
			if err != nil {
				return err
			}
			if ff.asJSON {
				printJSON(g, struct {
					Rollout     fleet.RolloutRow   `json:"rollout"`
					Transitions []fleet.Transition `json:"transitions"`
				}{r, ts})
				return nil
			}
			fmt.Fprintf(g.stdout, "rollout %d: %s of %s by %s, %s\n", r.ID, r.Kind, r.Commit, orDash(r.Actor), r.Outcome)
			if r.Error != "" {
				fmt.Fprintf(g.stdout, "  %s\n", r.Error)
			}
			for i, b := range r.Plan.Batches {
				fmt.Fprintf(g.stdout, "batch %d: %s\n", i+1, strings.Join(b, " "))
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.At.Local().Format("15:04:05.000"), t.Host, t.State, oneLine(t.Detail))
			}
			return tw.Flush()
		},
	}
}

func newFleetSnapshotsCmd(g *globals, ff *fleetFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshots [HOST]",
		Short: "The VM snapshots the fleet took (fleet.snapshot), newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			host := ""
			if len(args) == 1 {
				host = args[0]
			}
			ss, err := a.f.DB.Snapshots(signalContext(cmd), host)
			if err != nil {
				return err
			}
			if ff.asJSON {
				printJSON(g, ss)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CREATED\tHOST\tSNAPSHOT\tLABEL\tVM\tCOMMIT\tROLLOUT")
			for _, s := range ss {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.Created.Local().Format(time.DateTime), s.Host, s.ID, s.Label,
					orDash(s.VMID), orDash(short(s.Commit)), s.Rollout)
			}
			return tw.Flush()
		},
	}
}

func newFleetRestoreCmd(g *globals, ff *fleetFlags) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "restore HOST [--snapshot ID]",
		Short: "Restore a host's snapshot into a new VM, put it in the inventory in the host's place, and check it",
		Long: `restore runs fleet.snapshot.restore with the host's snapshot (its newest in
the fleet ledger unless --snapshot names one). The command makes a new VM
with the old state; its output gives the new VM's id and address
(new_vm_pattern, new_addr_pattern). They replace the host's in the
inventory, written atomically; the old entry is kept in the fleet ledger.
Then the new host is checked from here: slipway answers over ssh, healthy,
and the external checks pass (exit 4 if not).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ff.hosts = []string{args[0]}
			a, err := g.openFleet(ff)
			if err != nil {
				return err
			}
			defer a.close()
			r, err := a.f.Restore(signalContext(cmd), a.inv, a.hosts[0], id)
			if r != nil {
				if ff.asJSON {
					printJSON(g, r)
				} else if r.NewAddr != "" {
					fmt.Fprintf(g.stdout, "%s: snapshot %s restored into VM %s at %s (was %s at %s)\n", r.Host, r.Snapshot, r.NewVMID, r.NewAddr, orDash(r.OldVMID), r.OldAddr)
				}
			}
			if err != nil {
				fmt.Fprintf(g.stderr, "error: %v\n", err)
				if r != nil && r.Status != nil {
					return exitError(exitcode.RollbackFailed)
				}
				return exitError(exitcode.Failed)
			}
			fmt.Fprintf(g.stdout, "%s is healthy on %s, checked from outside\n", r.Host, short(r.Status.Current))
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "snapshot", "", "the snapshot to restore (default: the host's newest)")
	return cmd
}
