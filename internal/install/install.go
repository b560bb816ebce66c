// Package install bootstraps a host for one app, as a first-time set-up
// by hand would: the system user, the layout with its
// owners and modes, the bare mirror, and the systemd units. Every item is
// checked first and changed only when it differs, so a second run changes
// nothing and says so; a dry run prints what would change.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/fsutil"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service/systemd"
	"github.com/slipway-dev/slipway/internal/unit"
)

// Modes of deploying on push.
const (
	ModeAgent = "agent" // the agent daemon: polling, webhooks, API
	ModeTimer = "timer" // no daemon: a timer runs `slipway deploy`
)

// DefaultTimerEvery is timer mode's interval when triggers.poll is 0.
const DefaultTimerEvery = time.Minute

// Options are one install or uninstall.
type Options struct {
	Cfg *config.Config
	// Bin is slipway's absolute path, as the units will run it.
	Bin string
	// Mode is ModeAgent or ModeTimer.
	Mode   string
	DryRun bool
	// Purge makes uninstall remove shared/, env/ and the ledger too.
	Purge bool
	// Out gets one line per item.
	Out io.Writer
	// UnitDir is where units go (unit.Dir when empty).
	UnitDir string
}

// installer carries one run's state.
type installer struct {
	Options
	ctx     context.Context
	layout  release.Layout
	uid     int
	gid     int
	home    string
	changed int
	// rewritten are the units whose files this run wrote or removed.
	rewritten map[string]bool
}

// Install brings the host in line with the config. It returns how many
// items it changed (or would change, on a dry run).
func Install(ctx context.Context, o Options) (int, error) {
	in, err := newInstaller(ctx, o)
	if err != nil {
		return 0, err
	}
	if in.Mode != ModeAgent && in.Mode != ModeTimer {
		return 0, fmt.Errorf("mode %q: use %s or %s", in.Mode, ModeAgent, ModeTimer)
	}
	for _, step := range []func() error{in.user, in.dirs, in.envFiles, in.mirror, in.units, in.enable} {
		if err := step(); err != nil {
			return in.changed, err
		}
	}
	return in.changed, nil
}

func newInstaller(ctx context.Context, o Options) (*installer, error) {
	if o.Cfg.User == "" {
		return nil, fmt.Errorf("%s: install needs `user:`, the system user that builds and runs %s (slipway creates it); services are not run as root", o.Cfg.Path, o.Cfg.App)
	}
	if !o.DryRun && os.Geteuid() != 0 {
		return nil, errors.New("install and uninstall change the system (users, units under /etc/systemd/system): run them as root, or add --dry-run to see the plan")
	}
	return plainInstaller(ctx, o), nil
}

// plainInstaller is an installer without the checks that only changes to
// the system need (an uninstall under the process manager needs neither
// root nor `user:`).
func plainInstaller(ctx context.Context, o Options) *installer {
	if o.UnitDir == "" {
		o.UnitDir = unit.Dir
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return &installer{Options: o, ctx: ctx, layout: release.Layout{Root: o.Cfg.Root}, uid: -1, gid: -1, rewritten: map[string]bool{}}
}

// change reports one item that differs and, unless dry-run, applies it.
func (in *installer) change(what string, apply func() error) error {
	in.changed++
	if in.DryRun {
		fmt.Fprintf(in.Out, "  would %s\n", what)
		return nil
	}
	if err := apply(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	fmt.Fprintf(in.Out, "  %s: done\n", what)
	return nil
}

func (in *installer) ok(what string) { fmt.Fprintf(in.Out, "  %s: ok\n", what) }

// user creates the system user (and its group) when missing.
func (in *installer) user() error {
	name := in.Cfg.User
	if err := in.lookupUser(); err == nil {
		in.ok("user " + name)
		return nil
	}
	home := filepath.Join(in.Cfg.Root, "home")
	return in.change(fmt.Sprintf("create system user %s (home %s)", name, home), func() error {
		if err := os.MkdirAll(in.Cfg.Root, 0o755); err != nil {
			return err
		}
		if _, err := run.Output(in.ctx, run.Cmd{Timeout: time.Minute, Argv: []string{"useradd", "--system", "--user-group",
			"--home-dir", home, "--create-home", "--shell", "/usr/sbin/nologin", name}}); err != nil {
			return run.WithOutput(err, 5)
		}
		return in.lookupUser()
	})
}

func (in *installer) lookupUser() error {
	u, err := user.Lookup(in.Cfg.User)
	if err != nil {
		return err
	}
	in.uid, _ = strconv.Atoi(u.Uid)
	in.gid, _ = strconv.Atoi(u.Gid)
	in.home = u.HomeDir
	return nil
}

// dir is one directory of the layout with its owner and mode.
type dir struct {
	path string
	mode fs.FileMode
	app  bool // owned by the app user, else by root
}

func (in *installer) layoutDirs() []dir {
	l := in.layout
	ds := []dir{
		{l.Root, 0o755, false},
		{l.ReleasesDir(), 0o755, false},
		{l.SharedDir(), 0o755, false},
		{l.EnvDir(), 0o700, true},
		{l.RunDir(), 0o755, false},
		{filepath.Dir(unit.EnvPath(l.Root, "x")), 0o700, false},
		{l.LogDir(), 0o755, false},
		{l.DeployLogDir(), 0o755, false},
	}
	for _, p := range in.Cfg.Shared {
		ds = append(ds, dir{filepath.Join(l.SharedDir(), p), 0o755, true})
	}
	return ds
}

// dirs creates the layout's directories and fixes their owners and modes.
func (in *installer) dirs() error {
	for _, d := range in.layoutDirs() {
		uid, gid := 0, 0
		if d.app {
			uid, gid = in.uid, in.gid
		}
		fi, err := os.Stat(d.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = in.change(fmt.Sprintf("create %s (%04o, %s)", d.path, d.mode, in.owner(d.app)), func() error {
				if err := os.MkdirAll(d.path, d.mode); err != nil {
					return err
				}
				return fixDir(d.path, d.mode, uid, gid)
			})
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory; move it away and run install again", d.path)
		case fi.Mode().Perm() != d.mode || !ownedBy(fi, uid, gid):
			err = in.change(fmt.Sprintf("set %s to %04o, %s", d.path, d.mode, in.owner(d.app)), func() error {
				return fixDir(d.path, d.mode, uid, gid)
			})
		default:
			continue
		}
		if err != nil {
			return err
		}
	}
	in.ok("layout " + in.Cfg.Root)
	return nil
}

func (in *installer) owner(app bool) string {
	if app {
		return "owner " + in.Cfg.User
	}
	return "owner root"
}

func fixDir(path string, mode fs.FileMode, uid, gid int) error {
	if err := os.Chown(path, uid, gid); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

func ownedBy(fi fs.FileInfo, uid, gid int) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid && int(st.Gid) == gid
}

// envFiles makes each env file 0600 and the app user's; a missing one is
// created empty, to be filled in.
func (in *installer) envFiles() error {
	for _, name := range slices.Sorted(maps.Keys(in.Cfg.EnvFiles)) {
		path := in.Cfg.EnvFilePath(name)
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = in.change(fmt.Sprintf("create empty env file %s (0600, %s): fill it in", path, in.owner(true)), func() error {
				if err := fsutil.WriteFile(path, nil, 0o600); err != nil {
					return err
				}
				return os.Chown(path, in.uid, in.gid)
			})
		case err != nil:
			return err
		case fi.Mode().Perm() != 0o600 || !ownedBy(fi, in.uid, in.gid):
			err = in.change(fmt.Sprintf("set env file %s to 0600, %s", path, in.owner(true)), func() error {
				if err := os.Chown(path, in.uid, in.gid); err != nil {
					return err
				}
				return os.Chmod(path, 0o600)
			})
		default:
			in.ok("env file " + path)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// mirror creates the bare mirror; its first fetch is the first deploy's.
func (in *installer) mirror() error {
	m := &git.Mirror{Dir: in.layout.Repo(), Remote: in.Cfg.Repo}
	if _, err := os.Stat(filepath.Join(m.Dir, "HEAD")); err == nil {
		in.ok("mirror " + m.Dir)
		return nil
	}
	return in.change("create bare mirror "+m.Dir+" of "+git.Redact(in.Cfg.Repo), func() error {
		return m.Ensure(in.ctx)
	})
}

// wanted are the units of this install: the services', then the agent's
// or the timer pair.
func (in *installer) wanted() ([]unit.File, error) {
	files := unit.Services(in.Cfg)
	cfgPath, err := filepath.Abs(in.Cfg.Path)
	if err != nil {
		return nil, err
	}
	switch in.Mode {
	case ModeTimer:
		every := in.Cfg.Triggers.Poll.D()
		if every <= 0 {
			every = DefaultTimerEvery
		}
		svc, timer := unit.Timer(in.Cfg, in.Bin, cfgPath, in.home, every)
		files = append(files, svc, timer)
	default:
		files = append(files, unit.Agent(in.Cfg, in.Bin, cfgPath, in.home))
	}
	return files, nil
}

// units writes the unit files that differ, and removes the other mode's.
func (in *installer) units() error {
	files, err := in.wanted()
	if err != nil {
		return err
	}
	for _, f := range files {
		path := filepath.Join(in.UnitDir, f.Name)
		old, err := os.ReadFile(path)
		switch {
		case err == nil && string(old) == f.Content:
			in.ok("unit " + f.Name)
			continue
		case err == nil && !unit.Owned(string(old)):
			return fmt.Errorf("%s exists and was not written by slipway; remove it or set `unit:` to another name", path)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return err
		}
		verb := "write"
		if err == nil {
			verb = "update"
		}
		if err := in.change(verb+" unit "+path, func() error {
			return fsutil.WriteFile(path, []byte(f.Content), 0o644)
		}); err != nil {
			return err
		}
		in.rewritten[f.Name] = true
	}
	other := []string{unit.AgentName(in.Cfg.App)}
	if in.Mode == ModeAgent {
		other = []string{unit.TimerName(in.Cfg.App), unit.DeployName(in.Cfg.App)}
	}
	for _, name := range other {
		if err := in.removeUnit(name); err != nil {
			return err
		}
	}
	if len(in.rewritten) > 0 {
		return in.change("reload systemd", func() error { return systemctl(in.ctx, "daemon-reload") })
	}
	return nil
}

// removeUnit stops, disables and deletes a unit slipway wrote.
func (in *installer) removeUnit(name string) error {
	path := filepath.Join(in.UnitDir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !unit.Owned(string(b))) {
		return nil
	}
	if err != nil {
		return err
	}
	in.rewritten[name] = true
	return in.change("stop, disable and remove unit "+path, func() error {
		_ = systemctl(in.ctx, "disable", "--now", name)
		return os.Remove(path)
	})
}

// enable enables the service units (they start at boot on `current`), and
// enables and starts the agent or the timer. Services are started by the
// first deploy, not here: before it there is no release to run.
func (in *installer) enable() error {
	files, err := in.wanted()
	if err != nil {
		return err
	}
	for _, f := range files {
		if f.Name == unit.DeployName(in.Cfg.App) || strings.HasSuffix(f.Name, "@.service") {
			continue // started by its timer; a template's instances by deploys
		}
		starts := f.Name == unit.AgentName(in.Cfg.App) || f.Name == unit.TimerName(in.Cfg.App) || f.Name == unit.ProxyName(in.Cfg.App)
		if systemctl(in.ctx, "is-enabled", "--quiet", f.Name) != nil {
			if err := in.change("enable "+f.Name, func() error { return systemctl(in.ctx, "enable", "--quiet", f.Name) }); err != nil {
				return err
			}
		}
		if !starts {
			continue
		}
		active := systemctl(in.ctx, "is-active", "--quiet", f.Name) == nil
		switch {
		case !active:
			err = in.change("start "+f.Name, func() error { return systemctl(in.ctx, "start", f.Name) })
		case in.rewritten[f.Name]:
			err = in.change("restart "+f.Name+" (its unit changed)", func() error { return systemctl(in.ctx, "restart", f.Name) })
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func systemctl(ctx context.Context, args ...string) error {
	_, err := systemd.Systemctl(ctx, args...)
	return err
}
