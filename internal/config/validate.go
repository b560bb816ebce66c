package config

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/snapshot"
)

// namePattern is what app and service names look like: they end up in unit
// names, paths and URLs.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

const nameRule = `use lowercase letters, digits and "-", starting with a letter`

// validator checks a decoded config, pointing its errors into the file.
type validator struct {
	c  *Config
	ix *index
	// unset holds the paths of values with an unset ${VAR}: their format is
	// not checked here, verify-env refuses the deploy instead.
	unset map[string]bool
}

// validate returns the first problem in c, in roughly the order of the file.
func validate(c *Config, ix *index, unset map[string]bool) error {
	v := &validator{c: c, ix: ix, unset: unset}
	for _, check := range []func() error{
		v.app, v.repo, v.branch, v.keepReleases, v.shared, v.envFiles, v.requireEnv,
		v.build, v.migrate, v.manager, v.services, v.health, v.smoke,
		v.snapshot, v.triggers, v.api, v.notify, v.fleet,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// missing reports a required key absent from the mapping at p.
func (v *validator) missing(p keyPath, key, what string) error {
	if len(p) == 0 {
		return &Error{Pos: v.ix.pos(nil), Msg: fmt.Sprintf("missing required key %q (%s)", key, what)}
	}
	return v.ix.keyErrorf(p, "missing %q (%s)", key, what)
}

func (v *validator) app() error {
	p := keyPath{"app"}
	if !v.ix.has("app") {
		return v.missing(nil, "app", "the app's name, e.g. app: myapp")
	}
	if !namePattern.MatchString(v.c.App) {
		return v.ix.errorf(p, "%q is not a valid name: %s", v.c.App, nameRule)
	}
	return nil
}

func (v *validator) repo() error {
	if v.c.Repo == "" && !v.unset["repo"] {
		return v.missing(nil, "repo", "the git URL or local path to deploy from")
	}
	return nil
}

// branch refuses a name git would take for an option or refuse itself,
// before anything is created for the app.
func (v *validator) branch() error {
	if v.unset["branch"] {
		return nil
	}
	if err := git.CheckRefName(v.c.Branch); err != nil {
		return v.ix.errorf(keyPath{"branch"}, "%v", err)
	}
	return nil
}

func (v *validator) keepReleases() error {
	if v.c.KeepReleases < 0 {
		return v.ix.errorf(keyPath{"keep_releases"}, "must be 0 or more, got %d", v.c.KeepReleases)
	}
	return nil
}

func (v *validator) shared() error {
	for i, s := range v.c.Shared {
		if err := v.relPath(keyPath{"shared"}.index(i), s, false); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) envFiles() error {
	for _, name := range v.sortedKeys(keyPath{"env_files"}, slices.Collect(maps.Keys(v.c.EnvFiles))) {
		p := keyPath{"env_files", name}
		if name == "" {
			return v.ix.keyErrorf(p, "an env file needs a name")
		}
		if err := v.relPath(p, v.c.EnvFiles[name], false); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) requireEnv() error {
	for i, name := range v.c.RequireEnv {
		if !envKeyPattern.MatchString(name) {
			return v.ix.errorf(keyPath{"require_env"}.index(i), "%q is not a variable name", name)
		}
	}
	return nil
}

func (v *validator) build() error {
	seen := make(map[string]int)
	for i := range v.c.Build {
		s := &v.c.Build[i]
		p := keyPath{"build"}.index(i)
		if err := v.step(p, s); err != nil {
			return err
		}
		if s.PauseTraffic {
			return v.ix.errorf(p.key("pause_traffic"), "only the migrate step can pause traffic (builds run while the old release serves)")
		}
		if j, dup := seen[s.Name]; dup {
			at := p.key("name")
			if !v.ix.has(at.String()) {
				at = p.key("run")
			}
			return v.ix.errorf(at, "duplicate step name %q (also build[%d]); give each step a unique name", s.Name, j)
		}
		seen[s.Name] = i
	}
	return nil
}

func (v *validator) migrate() error {
	m := v.c.Migrate
	if m == nil {
		return nil
	}
	if err := v.step(keyPath{"migrate"}, m); err != nil {
		return err
	}
	if m.PauseTraffic {
		for _, s := range v.c.Services {
			if s != nil && s.Proxy != nil {
				return nil
			}
		}
		return v.ix.errorf(keyPath{"migrate", "pause_traffic"}, "needs a service with proxy: (the proxy holds the requests)")
	}
	return nil
}

func (v *validator) step(p keyPath, s *Step) error {
	if strings.TrimSpace(s.Run) == "" {
		return v.missing(p, "run", "the command to run")
	}
	if err := v.relPath(p.key("dir"), s.Dir, true); err != nil {
		return err
	}
	if err := v.envFile(p.key("env_file"), s.EnvFile); err != nil {
		return err
	}
	if s.Reuse == nil {
		return nil
	}
	if len(s.Reuse.Paths) == 0 {
		return v.missing(p.key("reuse"), "paths", "what to copy from the previous release")
	}
	if len(s.Reuse.Key) == 0 {
		return v.missing(p.key("reuse"), "key", "the files whose change forces a fresh build")
	}
	if s.Reuse.Link && s.Reuse.Share {
		return v.ix.errorf(p.key("reuse").key("share"), `set "link" or "share", not both`)
	}
	for i, r := range s.Reuse.Paths {
		if err := v.relPath(p.key("reuse").key("paths").index(i), r, false); err != nil {
			return err
		}
	}
	for i, r := range s.Reuse.Key {
		if err := v.relPath(p.key("reuse").key("key").index(i), r, false); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) manager() error {
	switch v.c.Manager {
	case ManagerSystemd, ManagerProcess:
		return nil
	}
	return v.ix.errorf(keyPath{"manager"}, "%q is not a service manager (use systemd or process)", v.c.Manager)
}

func (v *validator) services() error {
	commandRequired := v.c.Manager == ManagerProcess || !v.ix.has("manager")
	for _, name := range v.sortedKeys(keyPath{"services"}, slices.Collect(maps.Keys(v.c.Services))) {
		s := v.c.Services[name]
		p := keyPath{"services", name}
		if !namePattern.MatchString(name) {
			return &Error{Pos: v.ix.keyPos(p), Msg: fmt.Sprintf("services: %q is not a valid service name: %s", name, nameRule)}
		}
		if s == nil {
			return v.ix.keyErrorf(p, "expected a mapping with at least \"command\"")
		}
		if strings.TrimSpace(s.Command) == "" && commandRequired {
			return v.missing(p, "command", "how to start it; required unless manager is systemd")
		}
		if err := v.relPath(p.key("dir"), s.Dir, true); err != nil {
			return err
		}
		if err := v.envFile(p.key("env_file"), s.EnvFile); err != nil {
			return err
		}
		if s.Port < 0 || s.Port > 65535 {
			return v.ix.errorf(p.key("port"), "%d is out of range (1-65535)", s.Port)
		}
		if px := s.Proxy; px != nil {
			pp := p.key("proxy")
			if px.Listen == "" && !v.unset[pp.key("listen").String()] {
				return v.missing(pp, "listen", "the public address, e.g. 0.0.0.0:3000")
			}
			if err := v.listen(pp.key("listen"), px.Listen); err != nil {
				return err
			}
			if px.Health != "" && !strings.HasPrefix(px.Health, "/") {
				return v.ix.errorf(pp.key("health"), "%q must be a path starting with /", px.Health)
			}
		}
	}
	return nil
}

func (v *validator) health() error {
	h := v.c.Health
	if h == nil {
		return nil
	}
	p := keyPath{"health"}
	if h.URL == "" && !v.unset["health.url"] {
		return v.missing(p, "url", "the URL that answers when the app is up")
	}
	if err := v.httpURL(p.key("url"), h.URL); err != nil {
		return err
	}
	if h.FailAfter < 0 || h.FailAfter > 1000 {
		return v.ix.errorf(p.key("fail_after"), "must be from 0 (wait for the timeout) to 1000")
	}
	return v.status(p.key("expect_status"), h.ExpectStatus)
}

func (v *validator) smoke() error {
	for i := range v.c.Smoke {
		ch := &v.c.Smoke[i]
		p := keyPath{"smoke"}.index(i)
		hasURL := ch.URL != "" || v.unset[p.key("url").String()]
		switch {
		case hasURL && ch.Run != "":
			return v.ix.errorf(p, `set "url" or "run", not both`)
		case !hasURL && strings.TrimSpace(ch.Run) == "":
			return v.ix.errorf(p, `needs "url" (an HTTP check) or "run" (a command check)`)
		}
		if err := v.httpURL(p.key("url"), ch.URL); err != nil {
			return err
		}
		if hasURL {
			if err := v.status(p.key("expect_status"), ch.ExpectStatus); err != nil {
				return err
			}
		}
		if err := v.relPath(p.key("dir"), ch.Dir, true); err != nil {
			return err
		}
		if err := v.envFile(p.key("env_file"), ch.EnvFile); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) snapshot() error {
	s := v.c.Snapshot
	if s == nil {
		return nil
	}
	p := keyPath{"snapshot"}
	for i, d := range s.Data {
		if err := v.relPath(p.key("data").index(i), d, false); err != nil {
			return err
		}
		if d == "." {
			return v.ix.errorf(p.key("data").index(i), "name the paths under shared/ to archive, not shared/ itself")
		}
	}
	if s.IDPattern != "" {
		if _, err := regexp.Compile(s.IDPattern); err != nil {
			return v.ix.errorf(p.key("id_pattern"), "not a regular expression: %v", err)
		}
	}
	for _, k := range []struct{ key, text string }{{"create", s.Create}, {"restore", s.Restore}, {"delete", s.Delete}} {
		if k.text == "" {
			continue
		}
		if _, err := snapshot.ParseTemplate(k.text); err != nil {
			return v.ix.errorf(p.key(k.key), "%v", err)
		}
	}
	if s.Create != "" && s.IDPattern == "" {
		return v.missing(p, "id_pattern", "the regular expression that finds the snapshot id in create's output")
	}
	if s.Create == "" && len(s.Data) == 0 {
		return v.ix.errorf(p, "takes no snapshot: set data (shared/ paths to archive) or create (your VM's snapshot command)")
	}
	if (s.Restore != "" || s.Delete != "") && s.Create == "" {
		return v.missing(p, "create", "restore and delete work on what create made")
	}
	if s.Keep < 1 {
		return v.ix.errorf(p.key("keep"), "must be at least 1 (the snapshots kept per label)")
	}
	switch s.RestoreData {
	case RestoreDataAuto, RestoreDataNever:
	default:
		return v.ix.errorf(p.key("restore_data"), "%q: use auto or never", s.RestoreData)
	}
	return nil
}

func (v *validator) triggers() error {
	w := v.c.Triggers.Webhook
	if w == nil {
		return nil
	}
	p := keyPath{"triggers", "webhook"}
	if w.SecretEnv == "" {
		return v.missing(p, "secret_env", "the variable holding the webhook secret")
	}
	if err := v.varName(p.key("secret_env"), w.SecretEnv); err != nil {
		return err
	}
	return v.listen(p.key("listen"), w.Listen)
}

func (v *validator) api() error {
	p := keyPath{"api"}
	if err := v.listen(p.key("listen"), v.c.API.Listen); err != nil {
		return err
	}
	if err := v.varName(p.key("token_env"), v.c.API.TokenEnv); err != nil {
		return err
	}
	return v.varName(p.key("viewer_token_env"), v.c.API.ViewerTokenEnv)
}

func (v *validator) notify() error {
	for i, n := range v.c.Notify {
		p := keyPath{"notify"}.index(i)
		if n.URL == "" && !v.unset[p.key("url").String()] {
			return v.missing(p, "url", "where to POST deploy events")
		}
		if err := v.httpURL(p.key("url"), n.URL); err != nil {
			return err
		}
	}
	return nil
}

// relPath checks a path inside the release or shared/: relative, clean, and
// not escaping with "..". dot allows "." (and "") for a working directory.
func (v *validator) relPath(p keyPath, s string, dot bool) error {
	if v.unset[p.String()] || (dot && s == "") {
		return nil
	}
	if msg := relProblem(s, dot); msg != "" {
		return v.ix.errorf(p, "%s", msg)
	}
	return nil
}

// relProblem says what is wrong with s as a relative path, or "".
func relProblem(s string, dot bool) string {
	clean := path.Clean(s)
	switch {
	case s == "":
		return "must not be empty"
	case strings.HasPrefix(s, "/"):
		return fmt.Sprintf("%q must be a relative path", s)
	case clean == ".." || strings.HasPrefix(clean, "../"):
		return fmt.Sprintf("%q must stay inside its directory (no ..)", s)
	case clean == "." && !dot:
		return fmt.Sprintf("%q must name a file or directory", s)
	case clean != s:
		return fmt.Sprintf("%q is not clean (write %q)", s, clean)
	}
	return ""
}

func (v *validator) envFile(p keyPath, name string) error {
	if name == "" || v.unset[p.String()] {
		return nil
	}
	if _, ok := v.c.EnvFiles[name]; ok {
		return nil
	}
	if len(v.c.EnvFiles) == 0 {
		return v.ix.errorf(p, "%q is not in env_files (add it there: env_files: {%s: %s.env})", name, name, name)
	}
	known := slices.Sorted(maps.Keys(v.c.EnvFiles))
	return v.ix.errorf(p, "%q is not in env_files (known: %s)", name, strings.Join(known, ", "))
}

func (v *validator) httpURL(p keyPath, s string) error {
	if s == "" || v.unset[p.String()] {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return v.ix.errorf(p, "%q is not an http(s) URL (example: http://127.0.0.1:8000/health)", s)
	}
	return nil
}

func (v *validator) status(p keyPath, code int) error {
	if code < 100 || code > 599 {
		return v.ix.errorf(p, "%d is not an HTTP status (100-599)", code)
	}
	return nil
}

// listen checks a host:port address; "" is allowed (not set).
func (v *validator) listen(p keyPath, addr string) error {
	if addr == "" || v.unset[p.String()] {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return v.ix.errorf(p, "%q is not host:port (example: 127.0.0.1:9010)", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return v.ix.errorf(p, "port %q is out of range (1-65535)", port)
	}
	return nil
}

func (v *validator) varName(p keyPath, name string) error {
	if name == "" || v.unset[p.String()] || envKeyPattern.MatchString(name) {
		return nil
	}
	return v.ix.errorf(p, "%q is not a variable name", name)
}

// sortedKeys orders the keys of the mapping at p as they are written.
func (v *validator) sortedKeys(p keyPath, keys []string) []string {
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := v.ix.keyPos(p.key(a)), v.ix.keyPos(p.key(b))
		return cmp.Or(cmp.Compare(pa.Line, pb.Line), cmp.Compare(pa.Col, pb.Col), strings.Compare(a, b))
	})
	return keys
}
