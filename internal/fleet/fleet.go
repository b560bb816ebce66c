package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/release"
)

// Fleet is the operator's side: the app's config, its fleet section, the
// transport and the ledger.
type Fleet struct {
	Cfg     *config.Config
	F       *config.Fleet
	SSH     *SSH
	DB      *Ledger
	Events  func(Event) // every host transition and batch, as it happens
	Actor   string
	Version string // the operator's slipway version
	// LocalBinary is the operator's own slipway, copied to the hosts.
	LocalBinary string
}

// Event is a line of a rollout's progress.
type Event struct {
	Time    time.Time `json:"time"`
	Rollout int64     `json:"rollout,omitempty"`
	Batch   int       `json:"batch,omitempty"`
	Of      int       `json:"batches,omitempty"`
	Host    string    `json:"host,omitempty"`
	State   string    `json:"state"`
	Step    string    `json:"step,omitempty"`
	Commit  string    `json:"commit,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

func (f *Fleet) emit(ev Event) {
	ev.Time = time.Now()
	if f.Events != nil {
		f.Events(ev)
	}
}

// remote runs slipway on h with the host's config.
func (f *Fleet) remote(ctx context.Context, h *Host, stdin io.Reader, line func(string), args ...string) (string, error) {
	argv := append([]string{f.F.Binary, "-c", f.F.Config}, args...)
	return f.SSH.Run(ctx, h, stdin, line, argv...)
}

// HostStatus is what `slipway status --json` says of a host, and what the
// fleet makes of it.
type HostStatus struct {
	Host    string `json:"host"`
	Current string `json:"current"`
	Version string `json:"app_version,omitempty"`
	Safe    string `json:"safe"`
	Healthy bool   `json:"healthy"`
	// HealthErr is why it is not healthy.
	HealthErr string `json:"health_error,omitempty"`
	Lock      string `json:"lock,omitempty"`
	Agent     bool   `json:"agent"`
	Slipway   string `json:"slipway"`
	Error     string `json:"error,omitempty"`
	// Good are the commits of the host's kept releases that once passed
	// every check, newest first: where a rollback may go.
	Good []string `json:"good,omitempty"`
}

// Usual is the value of get that most hosts have: a host whose value
// differs has drifted from the rest.
func Usual(sts []HostStatus, get func(HostStatus) string) string {
	count := map[string]int{}
	best := ""
	for _, st := range sts {
		v := get(st)
		count[v]++
		if count[v] > count[best] {
			best = v
		}
	}
	return best
}

// Status asks h for its state: one slipway run on the host.
func (f *Fleet) Status(ctx context.Context, h *Host) HostStatus {
	// --offline: the fleet does not show the remote's tip, which would
	// cost each host a round trip to it.
	out, err := f.remote(ctx, h, nil, nil, "status", "--json", "--offline")
	return f.readStatus(ctx, h, out, err)
}

// readStatus reads what `slipway status --json` printed on h, and err, how
// the command ended: it exits 4 when the host is unhealthy, and still
// prints its status.
func (f *Fleet) readStatus(ctx context.Context, h *Host, out string, err error) HostStatus {
	hs := HostStatus{Host: h.Name}
	var re *RemoteError
	switch {
	case errors.As(err, &re) && re.Code == 127:
		hs.Error = h.Name + ": slipway is not installed at " + f.F.Binary + " (`slipway fleet install` puts it there)"
		return hs
	case err != nil && (re == nil || re.Code != exitcode.RollbackFailed):
		hs.Error = err.Error()
		return hs
	}
	var st struct {
		deploy.Status
		Agent   *struct{} `json:"agent"`
		Slipway string    `json:"slipway_version"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		hs.Error = h.Name + ": status: " + strings.TrimSpace(lastLines(out, 3))
		return hs
	}
	if st.Current != nil {
		hs.Current, hs.Version = st.Current.Commit, st.Current.Version
	}
	hs.Safe, hs.Healthy, hs.HealthErr, hs.Agent, hs.Slipway = st.Safe, st.Healthy, st.HealthErr, st.Agent != nil, st.Slipway
	for _, r := range st.Good {
		hs.Good = append(hs.Good, r.Commit)
	}
	if st.Lock != nil && st.Lock.Frozen {
		hs.Lock = st.Lock.Holder.String()
	}
	if hs.Slipway == "" {
		// A slipway older than the field: it says its version when asked.
		out, err := f.SSH.Run(ctx, h, nil, nil, f.F.Binary, "version")
		if v, ok := strings.CutPrefix(out, "slipway "); ok && err == nil {
			hs.Slipway, _, _ = strings.Cut(v, " ")
		}
	}
	return hs
}

// StatusAll asks every host at once.
func (f *Fleet) StatusAll(ctx context.Context, hosts []*Host) []HostStatus {
	out := make([]HostStatus, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { out[i] = f.Status(ctx, h) })
	}
	wg.Wait()
	return out
}

// InstallResult is what `fleet install` did on one host.
type InstallResult struct {
	Host    string   `json:"host"`
	Outcome string   `json:"outcome"` // ok | changed | failed
	Changes []string `json:"changes,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Install puts the operator's slipway and the app's config on h, then runs
// `slipway install` there. What is already in place is left alone.
func (f *Fleet) Install(ctx context.Context, h *Host, cfgPath string) InstallResult {
	r := InstallResult{Host: h.Name, Outcome: "ok"}
	fail := func(err error) InstallResult {
		r.Outcome, r.Error = "failed", err.Error()
		return r
	}
	bin, err := os.ReadFile(f.LocalBinary)
	if err != nil {
		return fail(err)
	}
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return fail(err)
	}
	// What the host has now: the checksums of its slipway and its config.
	out, err := f.SSH.Run(ctx, h, nil, nil, "sh", "-c", `sha256sum "$1" "$2" 2>/dev/null; "$1" version 2>/dev/null; exit 0`, "sh", f.F.Binary, f.F.Config)
	if err != nil {
		return fail(err)
	}
	have := map[string]string{}
	remoteVersion := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "slipway "); ok {
			remoteVersion, _, _ = strings.Cut(v, " ")
			continue
		}
		if sum, file, ok := strings.Cut(line, "  "); ok {
			have[file] = sum
		}
	}
	put := func(what, path string, data []byte, mode string) error {
		if have[path] == sum(data) {
			return nil
		}
		// Written beside, then renamed over: a running slipway keeps its
		// binary, and no reader sees half a file.
		_, err := f.SSH.Run(ctx, h, bytes.NewReader(data), nil, "sh", "-c",
			`set -e; mkdir -p "$(dirname "$1")"; t="$1.fleet-tmp"; cat >"$t"; chmod "$2" "$t"; mv -f "$t" "$1"`, "sh", path, mode)
		if err == nil {
			r.Changes = append(r.Changes, what)
		}
		return err
	}
	if remoteVersion != "" && remoteVersion != f.Version {
		r.Changes = append(r.Changes, fmt.Sprintf("slipway %s replaced by the operator's %s", remoteVersion, f.Version))
	}
	if err := put("slipway "+f.Version+" at "+f.F.Binary, f.F.Binary, bin, "0755"); err != nil {
		return fail(err)
	}
	if err := put("config at "+f.F.Config, f.F.Config, cfg, "0644"); err != nil {
		return fail(err)
	}
	out, err = f.remote(ctx, h, nil, nil, "install")
	if err != nil {
		return fail(err)
	}
	for _, line := range strings.Split(out, "\n") {
		// `slipway install` says "<what>: done" of each change it made.
		if c, ok := strings.CutSuffix(strings.TrimSpace(line), ": done"); ok {
			r.Changes = append(r.Changes, c)
		}
	}
	if len(r.Changes) > 0 {
		r.Outcome = "changed"
	}
	return r
}

// PushEnv copies the operator's env files to h's env directory, mode 0600
// in a 0700 directory. The contents go through ssh's stdin, never argv.
func (f *Fleet) PushEnv(ctx context.Context, h *Host, dir string) InstallResult {
	r := InstallResult{Host: h.Name, Outcome: "ok"}
	envDir := release.Layout{Root: f.Cfg.Root}.EnvDir()
	for _, name := range slices.Sorted(maps.Keys(f.Cfg.EnvFiles)) {
		file := f.Cfg.EnvFiles[name]
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			r.Outcome, r.Error = "failed", err.Error()
			return r
		}
		path := filepath.Join(envDir, file)
		out, err := f.SSH.Run(ctx, h, bytes.NewReader(data), nil, "sh", "-c",
			`set -e; umask 077; mkdir -p "$1"; chmod 0700 "$1"; t="$2.fleet-tmp"; cat >"$t"; chmod 0600 "$t"; chown --reference="$1" "$t";
			if [ -f "$2" ] && cmp -s "$t" "$2"; then rm -f "$t"; echo same; else mv -f "$t" "$2"; echo changed; fi`, "sh", envDir, path)
		if err != nil {
			r.Outcome, r.Error = "failed", err.Error()
			return r
		}
		if strings.TrimSpace(out) == "changed" {
			r.Outcome = "changed"
			r.Changes = append(r.Changes, path)
		}
	}
	return r
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Resolve is the commit a rollout deploys, resolved once on the operator's
// side: the local repository at repo (the operator's checkout or the
// configured repo), at ref, or the configured branch.
func Resolve(ctx context.Context, repo, ref string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--verify", "--end-of-options", ref+"^{commit}")
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("resolve %s in %s: %s", ref, repo, strings.TrimSpace(string(exit.Stderr)))
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// Push sends commit from the local repository into h's mirror, over the
// host's ssh connection: the host then needs no access to the git server.
func (f *Fleet) Push(ctx context.Context, h *Host, repo, commit string) error {
	mirror := release.Layout{Root: f.Cfg.Root}.Repo()
	url := "ssh://" + h.Dest + mirror
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "push", "--quiet", "--no-verify", url, "+"+commit+":refs/slipway/pushed/"+commit)
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND="+f.SSH.GitSSH(h))
	if err := f.SSH.begin(ctx, h); err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	f.SSH.end(h, err)
	if err != nil {
		return fmt.Errorf("%s: git push into %s: %v: %s", h.Name, mirror, err, strings.TrimSpace(lastLines(string(out), 3)))
	}
	return nil
}

// RollbackTarget is the commit `fleet rollback` goes to: to (a commit id
// or prefix) when every host keeps a good release of it, else, without to,
// the newest commit every host keeps that is not what all of them run. It
// asks every host first, so that nothing changes unless all can go.
func RollbackTarget(sts []HostStatus, to string) (string, error) {
	var missing []string
	for _, st := range sts {
		if st.Error != "" {
			return "", errors.New(st.Error)
		}
	}
	if to != "" {
		to = strings.ToLower(to)
		found := ""
		for _, st := range sts {
			i := slices.IndexFunc(st.Good, func(c string) bool { return strings.HasPrefix(c, to) })
			if i < 0 {
				missing = append(missing, st.Host)
				continue
			}
			if found != "" && found != st.Good[i] {
				return "", fmt.Errorf("--to %s names two commits (%.12s, %.12s): give more of it", to, found, st.Good[i])
			}
			found = st.Good[i]
		}
		if len(missing) > 0 {
			return "", fmt.Errorf("no host changed: %s keep(s) no good release of %s", strings.Join(missing, ", "), to)
		}
		return found, nil
	}
	allOn := sts[0].Current
	for _, st := range sts {
		if st.Current != allOn {
			allOn = ""
		}
	}
	for _, c := range sts[0].Good {
		if c == allOn {
			continue
		}
		if !slices.ContainsFunc(sts, func(st HostStatus) bool { return !slices.Contains(st.Good, c) }) {
			return c, nil
		}
	}
	return "", errors.New("no host changed: the hosts keep no good release in common to go back to (see `slipway fleet status`)")
}
