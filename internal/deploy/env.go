package deploy

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
)

// vars are the SLIPWAY_* values of one deploy (docs/deploy.md).
type vars struct {
	rel      release.Release
	previous string
	deployID int64
}

// env is the environment of every command and service of a release: a
// minimal base, then the named env file, then the slipway variables.
func (e *Engine) env(envFile string, v vars) []string {
	base := run.BaseEnv()
	if name := e.Cfg.User; name != "" {
		base = append(base, "USER="+name, "LOGNAME="+name)
		if u, err := user.Lookup(name); err == nil && u.HomeDir != "" {
			// Their own caches (uv, npm, go), not the invoking user's.
			base = run.MergeEnv(base, map[string]string{"HOME": u.HomeDir}, []string{"HOME"})
		}
	}
	if lang := os.Getenv("LANG"); lang != "" {
		base = append(base, "LANG="+lang)
	}
	over := map[string]string{}
	for k, val := range e.Cfg.EnvFor(envFile) {
		over[k] = val
	}
	over["APP_VERSION"] = v.rel.Version
	over["SLIPWAY_APP"] = e.Cfg.App
	over["SLIPWAY_COMMIT"] = v.rel.Commit
	over["SLIPWAY_RELEASE_DIR"] = v.rel.Dir
	over["SLIPWAY_PREVIOUS_COMMIT"] = v.previous
	if v.deployID > 0 {
		over["SLIPWAY_DEPLOY_ID"] = strconv.FormatInt(v.deployID, 10)
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return run.MergeEnv(base, over, keys)
}

// credential is who builds and services run as: the configured user when
// slipway runs as root, else the invoking user (nil).
func (e *Engine) credential() (*syscall.Credential, error) {
	if e.Cfg.User == "" || os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(e.Cfg.User)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w (create it, or change `user:` in %s)", e.Cfg.User, err, e.Cfg.Path)
	}
	if u.Uid == "0" {
		return nil, nil
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

// chown gives a release tree to the configured user, so builds running as
// that user can write in it: a tree left to root gives the build
// permission errors on its dependency directories.
func chown(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}

// chownAll is chown for each of dirs.
func chownAll(dirs []string, cred *syscall.Credential) error {
	for _, d := range dirs {
		if err := chown(d, cred); err != nil {
			return err
		}
	}
	return nil
}

// chownShared gives each shared path that slipway created (still owned by
// root) to the configured user, so services running as that user can write
// their data. Only the top directory changes: data already there keeps
// its owners.
func chownShared(sharedDir string, paths []string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	for _, p := range paths {
		path := filepath.Join(sharedDir, p)
		fi, err := os.Lstat(path)
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 && fi.IsDir() {
			if err := os.Lchown(path, int(cred.Uid), int(cred.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// specs returns the services of a release as the service manager sees them;
// a proxied service is the instance the proxy sends its traffic to, or the
// one startAll readied for it.
func (e *Engine) specs(ctx context.Context, v vars, cred *syscall.Credential) []service.Spec {
	var out []service.Spec
	for _, name := range e.Cfg.ServiceNames() {
		s := e.Cfg.Services[name]
		spec := e.spec(s, v, cred)
		if s.Proxy != nil {
			if inst, ok := e.readied(name); ok {
				spec = inst // readied, not serving yet: the one being checked
			} else {
				spec, _, _ = e.activeInstance(ctx, spec)
			}
		}
		out = append(out, spec)
	}
	return out
}

func (e *Engine) spec(s *config.Service, v vars, cred *syscall.Credential) service.Spec {
	dir := v.rel.Dir
	if s.Dir != "" {
		dir = filepath.Join(v.rel.Dir, s.Dir)
	}
	// SLIPWAY_ROOT and SLIPWAY_SERVICE mark the process as this service's,
	// so that a manager can find it even without its pid file.
	env := e.env(s.EnvFile, v)
	if s.Port != 0 && !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PORT=") }) {
		// The port the config gives it, unless its env file says: a
		// service never starts on a PORT it was not told.
		env = append(env, "PORT="+strconv.Itoa(s.Port))
	}
	env = append(env, "SLIPWAY_ROOT="+e.Cfg.Root, "SLIPWAY_SERVICE="+s.Name)
	return service.Spec{
		App:         e.Cfg.App,
		Name:        s.Name,
		Dir:         dir,
		Command:     s.Command,
		Env:         env,
		Port:        s.Port,
		StopTimeout: s.StopTimeout.D(),
		Unit:        s.Unit,
		Credential:  cred,
	}
}
