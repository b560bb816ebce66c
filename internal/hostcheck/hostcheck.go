// Package hostcheck inspects a host against an app's config for
// `slipway check`: each finding says what is wrong and how to fix it.
package hostcheck

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
)

// Level is how serious a finding is.
type Level string

// Levels of findings.
const (
	OK   Level = "ok"
	Warn Level = "warn"
	Fail Level = "fail"
)

// Finding is one result of a check.
type Finding struct {
	Level Level  `json:"level"`
	Check string `json:"check"`
	What  string `json:"what"`
	Fix   string `json:"fix,omitempty"`
}

// Owner says whether a process holding a port is one of the app's services.
type Owner func(port, pid int) bool

// Run checks the host for cfg. ours tells a port held by the app's own
// service from a foreign one.
func Run(ctx context.Context, cfg *config.Config, ours Owner) []Finding {
	var fs []Finding
	add := func(l Level, check, what, fix string) { fs = append(fs, Finding{l, check, what, fix}) }
	layout := release.Layout{Root: cfg.Root}

	add(OK, "config", cfg.Path+" is valid", "")
	if b, err := os.ReadFile(cfg.Path); err == nil {
		for i, line := range strings.Split(string(b), "\n") {
			if _, todo, ok := strings.Cut(line, "# TODO"); ok {
				todo = strings.TrimSpace(strings.TrimPrefix(todo, ":"))
				add(Warn, "config", fmt.Sprintf("%s:%d: a guess of `slipway init` is still marked TODO: %s", cfg.Path, i+1, todo), "check that line, then remove its TODO")
			}
		}
	}
	for _, u := range cfg.Unset {
		add(Fail, "config", fmt.Sprintf("%s: ${%s} is not set", u.Pos, u.Name), "set it in the environment or in an env file under "+layout.EnvDir())
	}

	if path, err := exec.LookPath("git"); err != nil {
		add(Fail, "git", "git is not installed", "install git (apt-get install git)")
	} else if out, err := run.Output(ctx, run.Cmd{Argv: []string{path, "--version"}, Timeout: 10 * time.Second}); err == nil {
		add(OK, "git", strings.TrimSpace(out), "")
	}

	if cfg.User != "" {
		if _, err := user.Lookup(cfg.User); err != nil {
			add(Fail, "user", fmt.Sprintf("user %q does not exist", cfg.User), "create it (useradd --system "+cfg.User+") or change `user:`")
		} else if os.Geteuid() != 0 {
			if me, _ := user.Current(); me == nil || me.Username != cfg.User {
				add(Warn, "user", fmt.Sprintf("slipway is not root, so builds and services run as the invoking user, not %q", cfg.User), "run slipway as root or as "+cfg.User)
			}
		} else {
			add(OK, "user", "builds and services run as "+cfg.User, "")
		}
	}

	fs = append(fs, checkRoot(cfg.Root)...)
	fs = append(fs, checkEnv(cfg, layout)...)
	fs = append(fs, checkShared(cfg, layout)...)
	fs = append(fs, checkDeps(layout)...)
	fs = append(fs, checkPorts(cfg, ours)...)
	fs = append(fs, checkDisk(cfg.Root)...)

	m := &git.Mirror{Dir: layout.Repo(), Remote: cfg.Repo, Timeout: 15 * time.Second}
	if tip, err := m.RemoteTip(ctx, cfg.Branch); err != nil {
		add(Fail, "remote", err.Error(), "check `repo:` and `branch:`, and that this user's git credentials reach it")
	} else {
		add(OK, "remote", fmt.Sprintf("%s %s is at %s", git.Redact(cfg.Repo), cfg.Branch, tip[:7]), "")
	}
	return fs
}

func checkRoot(root string) []Finding {
	dir := root
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	f, err := os.CreateTemp(dir, ".slipway-check-*")
	if err != nil {
		return []Finding{{Fail, "root", fmt.Sprintf("%s is not writable: %v", dir, err), "create " + root + " owned by the user that runs slipway"}}
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	return []Finding{{OK, "root", root + " is writable", ""}}
}

func checkEnv(cfg *config.Config, layout release.Layout) []Finding {
	var fs []Finding
	envDir := layout.EnvDir()
	if len(cfg.EnvFiles) > 0 {
		info, err := os.Stat(envDir)
		var me *config.ModeError
		switch {
		case err != nil:
			fs = append(fs, Finding{Fail, "env", envDir + " does not exist", "install -d -m 0700 " + envDir})
		case errors.As(config.CheckPrivate(envDir, info), &me):
			fs = append(fs, Finding{Fail, "env", me.Error(), me.Fix()})
		default:
			fs = append(fs, Finding{OK, "env", envDir + " is 0700", ""})
		}
	}
	names := make([]string, 0, len(cfg.EnvFiles))
	for name := range cfg.EnvFiles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := cfg.EnvFilePath(name)
		info, err := os.Stat(path)
		if err != nil {
			fs = append(fs, Finding{Fail, "env", fmt.Sprintf("env file %s (%s) is missing", name, path), "create it with `install -m 0600 /dev/null " + path + "` and fill in its variables"})
			continue
		}
		var me *config.ModeError
		if errors.As(config.CheckPrivate(path, info), &me) {
			fs = append(fs, Finding{Fail, "env", me.Error(), me.Fix()})
		} else if _, err := config.ReadEnvFile(path); err != nil {
			fs = append(fs, Finding{Fail, "env", err.Error(), "fix the line it names"})
		} else {
			fs = append(fs, Finding{OK, "env", path + " is 0600 and parses", ""})
		}
	}
	// As verify-env counts them: only the env files, since services
	// never inherit slipway's own environment.
	for _, k := range cfg.RequireEnv {
		if !cfg.InEnvFiles(k) {
			what := "required variable " + k + " is unset or empty in the env files"
			if v, ok := os.LookupEnv(k); ok && v != "" {
				what += " (it is set in slipway's own environment, but services never inherit that)"
			}
			fs = append(fs, Finding{Fail, "env", what, "set " + k + " in an env file under " + envDir})
		} else {
			fs = append(fs, Finding{OK, "env", k + " is set", ""})
		}
	}
	return fs
}

// checkShared checks each shared path as a deploy will use it. A missing
// one is created (empty) by the next deploy: before the first deploy that
// is expected, but with a release live it means the app's data is not
// where its releases link. An existing one must be writable by the user
// the app runs as; when slipway runs as root with `user:`, a deploy gives
// the top directory to that user, but not what is inside it.
func checkShared(cfg *config.Config, layout release.Layout) []Finding {
	var fs []Finding
	givenAway := os.Geteuid() == 0 && cfg.User != "" && cfg.User != "root"
	live, _ := layout.Current()
	for _, p := range cfg.Shared {
		path := filepath.Join(layout.SharedDir(), p)
		info, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist) && live != "" && linked(layout, live, p):
			fs = append(fs, Finding{Fail, "shared", path + " does not exist, but release " + live + " is live: its data is not where the releases link, and the next deploy would start the app on an empty directory",
				"put the data back (from a backup, or `slipway snapshot list` and `slipway snapshot restore`), or create it empty: install -d " + path})
		case errors.Is(err, os.ErrNotExist):
			fs = append(fs, Finding{Warn, "shared", path + " does not exist; the next deploy creates it (empty)",
				"if the app's data is elsewhere, copy it there first: install -d " + path + " && cp -a OLD/. " + path + "/"})
		case err != nil:
			fs = append(fs, Finding{Fail, "shared", err.Error(), ""})
		case givenAway:
			if bad, err := notWritableBy(path, cfg.User); err != nil {
				fs = append(fs, Finding{Fail, "shared", err.Error(), ""})
			} else if bad != "" {
				fs = append(fs, Finding{Fail, "shared", path + " is not writable by " + cfg.User + ", whom the app runs as: " + bad,
					"chown -R " + cfg.User + ": " + path})
			} else {
				fs = append(fs, Finding{OK, "shared", path + " exists and is writable by " + cfg.User, ""})
			}
		case unix.Access(path, unix.W_OK) != nil:
			fs = append(fs, Finding{Fail, "shared", fmt.Sprintf("%s is not writable by the app's user (it is owned by uid %d, mode %04o)", path, ownerOf(info), info.Mode().Perm()),
				"chown -R $(id -un) " + path})
		default:
			fs = append(fs, Finding{OK, "shared", path + " exists and is writable", ""})
		}
	}
	return fs
}

// checkDeps checks that the dependency trees the live release links
// (reuse.share) are in deps/.
func checkDeps(layout release.Layout) []Finding {
	live, _ := layout.Current()
	if live == "" {
		return nil
	}
	linked, missing, err := layout.Deps(live)
	switch {
	case err != nil:
		return []Finding{{Fail, "deps", err.Error(), ""}}
	case len(missing) > 0:
		return []Finding{{Fail, "deps", fmt.Sprintf("release %s is live but links trees that are gone from %s: %s; its services would not start again",
			live, layout.DepsDir(), strings.Join(missing, ", ")), "slipway deploy --force (the build steps build them again)"}}
	}
	if len(linked) > 0 {
		return []Finding{{OK, "deps", fmt.Sprintf("the trees release %s links are in %s", live, layout.DepsDir()), ""}}
	}
	return nil
}

// linked reports whether the live release links shared path p: a shared
// path just added to the config is linked by no release yet.
func linked(layout release.Layout, live, p string) bool {
	fi, err := os.Lstat(filepath.Join(layout.Dir(live), p))
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// sharedLook bounds how many entries of a shared tree notWritableBy looks
// at: a data directory may hold millions of files.
const sharedLook = 10000

// notWritableBy looks through the tree at dir for a directory or file that
// name may not write, and says which (and how many) it found, or "". The
// top directory counts as the user's when root owns it: a deploy gives it
// to the user.
func notWritableBy(dir, name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("user %s: %w", name, err)
	}
	gids, _ := u.GroupIds()
	gids = append(gids, u.Gid)
	var first string
	n, seen := 0, 0
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone meanwhile: a live app's temporary file
		}
		if err != nil {
			return err
		}
		if seen++; seen > sharedLook {
			return filepath.SkipAll
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil // a symlink or a socket: its target's owner decides
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		// A deploy gives the top directory (not a file) to the user.
		if !ok || (p == dir && d.IsDir() && st.Uid == 0) || writable(st, u.Uid, gids) {
			return nil
		}
		if n++; first == "" {
			first = fmt.Sprintf("%s is owned by uid %d, mode %04o", p, st.Uid, info.Mode().Perm())
		}
		return nil
	})
	if err != nil || n == 0 {
		return "", err
	}
	if n > 1 {
		first += fmt.Sprintf(", and %d more", n-1)
	}
	return first, nil
}

// writable reports whether the owner, group and other bits of st let the
// user uid, in groups gids, write it.
func writable(st *syscall.Stat_t, uid string, gids []string) bool {
	switch {
	case fmt.Sprint(st.Uid) == uid:
		return st.Mode&0o200 != 0
	case slices.Contains(gids, fmt.Sprint(st.Gid)):
		return st.Mode&0o020 != 0
	default:
		return st.Mode&0o002 != 0
	}
}

func ownerOf(info os.FileInfo) int {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func checkPorts(cfg *config.Config, ours Owner) []Finding {
	var fs []Finding
	for _, name := range cfg.ServiceNames() {
		s := cfg.Services[name]
		if s.Port == 0 {
			continue
		}
		pid, cmdline, err := service.PortOwner(s.Port)
		switch {
		case err != nil:
			fs = append(fs, Finding{Warn, "ports", fmt.Sprintf("port %d: %v", s.Port, err), "run `ss -ltnp` as root to see who holds it"})
		case pid == 0:
			fs = append(fs, Finding{OK, "ports", fmt.Sprintf("port %d (%s) is free", s.Port, name), ""})
		case ours != nil && ours(s.Port, pid):
			fs = append(fs, Finding{OK, "ports", fmt.Sprintf("port %d is held by %s itself (pid %d)", s.Port, name, pid), ""})
		default:
			fs = append(fs, Finding{Fail, "ports", fmt.Sprintf("port %d is held by pid %d (%s), not by slipway's %s service", s.Port, pid, cmdline, name),
				fmt.Sprintf("stop that process (kill %d) or change services.%s.port", pid, name)})
		}
	}
	return fs
}

// Disk thresholds for the release tree and builds.
const (
	diskWarn = 1 << 30
	diskFail = 200 << 20
)

func checkDisk(root string) []Finding {
	dir := root
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return []Finding{{Warn, "disk", err.Error(), ""}}
	}
	free := st.Bavail * uint64(st.Bsize)
	what := fmt.Sprintf("%.1f GiB free on %s", float64(free)/(1<<30), dir)
	switch {
	case free < diskFail:
		return []Finding{{Fail, "disk", what, "free space: lower keep_releases or clean up the disk"}}
	case free < diskWarn:
		return []Finding{{Warn, "disk", what, "builds may run out of space; free some"}}
	}
	return []Finding{{OK, "disk", what, ""}}
}
