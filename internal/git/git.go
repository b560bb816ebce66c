// Package git drives the real git binary against slipway's bare mirror.
// The user's ssh config and credentials apply; git never prompts.
package git

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/run"
)

// Mirror is a bare mirror of the app's repository (<root>/repo.git).
type Mirror struct {
	Dir    string // the bare repository
	Remote string // URL or local path of the app's repository
	// Timeout bounds each network operation.
	Timeout time.Duration
}

// ErrUnknownRevision is returned when a ref or commit is not in the repository.
var ErrUnknownRevision = errors.New("unknown revision")

func (m *Mirror) env() []string {
	env := run.BaseEnv()
	env = append(env, "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=true", "GIT_CONFIG_NOSYSTEM=0")
	// The user's ssh agent and ssh config are theirs to use.
	for _, k := range []string{"SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSH", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "USER"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (m *Mirror) git(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	argv := append([]string{"git"}, args...)
	shown := make([]string, len(argv))
	for i, a := range argv {
		shown[i] = Redact(a)
	}
	out, err := run.Output(ctx, run.Cmd{Argv: argv, Env: m.env(), Timeout: timeout, Display: strings.Join(shown, " ")})
	return out, run.WithOutput(err, 5)
}

func (m *Mirror) timeout() time.Duration {
	if m.Timeout > 0 {
		return m.Timeout
	}
	return 5 * time.Minute
}

// remote returns the remote as git should see it: local paths made absolute.
func (m *Mirror) remote() string {
	r := m.Remote
	if isLocalPath(r) && !filepath.IsAbs(r) {
		if abs, err := filepath.Abs(r); err == nil {
			return abs
		}
	}
	return r
}

// isLocalPath tells a local path from a URL (scheme://...) or an scp-like
// address (host:path, user@host:path: a colon before any slash), as git does.
func isLocalPath(r string) bool {
	if strings.Contains(r, "://") {
		return false
	}
	colon := strings.IndexByte(r, ':')
	slash := strings.IndexByte(r, '/')
	return colon < 0 || (slash >= 0 && slash < colon)
}

// Ensure creates the mirror when missing and points it at the configured remote.
func (m *Mirror) Ensure(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(m.Dir, "HEAD")); err == nil {
		if m.originIs(m.remote()) {
			return nil
		}
		_, err = m.git(ctx, 10*time.Second, "--git-dir", m.Dir, "remote", "set-url", "origin", m.remote())
		return err
	}
	tmp := m.Dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if _, err := m.git(ctx, 10*time.Second, "init", "--bare", "--quiet", tmp); err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	for _, kv := range [][]string{
		{"remote.origin.url", m.remote()},
		{"remote.origin.fetch", "+refs/heads/*:refs/heads/*"},
		{"--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*"},
		{"remote.origin.mirror", "true"},
		{"gc.auto", "0"},
	} {
		args := append([]string{"--git-dir", tmp, "config"}, kv...)
		if _, err := m.git(ctx, 10*time.Second, args...); err != nil {
			return fmt.Errorf("configure mirror: %w", err)
		}
	}
	if err := os.Rename(tmp, m.Dir); err != nil {
		return fmt.Errorf("create mirror: %w", err)
	}
	return nil
}

// originIs reports whether the mirror's origin is url. It reads the config
// file that Ensure wrote rather than starting git: this is on the path of
// every deploy, including the no-op one.
func (m *Mirror) originIs(url string) bool {
	b, err := os.ReadFile(filepath.Join(m.Dir, "config"))
	if err != nil {
		return false
	}
	inOrigin := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			inOrigin = line == `[remote "origin"]`
			continue
		}
		if k, v, ok := strings.Cut(line, "="); inOrigin && ok && strings.TrimSpace(k) == "url" {
			return strings.TrimSpace(v) == url
		}
	}
	return false
}

// Fetch updates the mirror from the remote.
func (m *Mirror) Fetch(ctx context.Context) error {
	if _, err := m.git(ctx, m.timeout(), "--git-dir", m.Dir, "fetch", "--prune", "--quiet", "--no-auto-maintenance", "origin"); err != nil {
		m.removeTmpObjects()
		return fmt.Errorf("fetch %s: %w", Redact(m.Remote), err)
	}
	return nil
}

// FetchBranch updates only branch in the mirror and returns the commit at
// its tip: cheaper than Fetch, or than RemoteTip followed by a fetch, on the
// path of every deploy. With nothing new, git asks the remote for the ref
// and fetches nothing, as ls-remote would.
func (m *Mirror) FetchBranch(ctx context.Context, branch string) (string, error) {
	if err := CheckRefName(branch); err != nil {
		return "", err
	}
	ref := "refs/heads/" + branch
	if _, err := m.git(ctx, m.timeout(), "--git-dir", m.Dir, "fetch", "--quiet", "--no-tags", "--no-auto-maintenance", "origin", "+"+ref+":"+ref); err != nil {
		m.removeTmpObjects()
		if strings.Contains(err.Error(), "couldn't find remote ref") {
			return "", fmt.Errorf("branch %q: %w on %s", branch, ErrUnknownRevision, Redact(m.Remote))
		}
		return "", fmt.Errorf("fetch %s from %s: %w", branch, Redact(m.Remote), err)
	}
	// FETCH_HEAD names what this fetch got ("<sha>\t\tbranch 'main' of
	// <url>", the URL without credentials): reading it spares a git process.
	b, err := os.ReadFile(filepath.Join(m.Dir, "FETCH_HEAD"))
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", branch, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	sha, _, _ := strings.Cut(line, "\t")
	if !IsSHA(sha) {
		return "", fmt.Errorf("fetch %s: FETCH_HEAD does not start with a commit id: %q", branch, line)
	}
	return sha, nil
}

// removeTmpObjects deletes what a failed fetch left in the object store:
// git writes each object and pack under a tmp_ name first, and one that
// dies (a full disk, a timeout) can leave them. Nothing else writes to the
// mirror meanwhile: fetches run under the deploy lock.
func (m *Mirror) removeTmpObjects() {
	objects := filepath.Join(m.Dir, "objects")
	_ = filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && (strings.HasPrefix(d.Name(), "tmp_obj_") || strings.HasPrefix(d.Name(), "tmp_pack_") || strings.HasPrefix(d.Name(), "tmp_idx_")) {
			_ = os.Remove(p)
		}
		return nil
	})
}

// RemoteTip asks the remote for the commit at the tip of branch, without fetching.
func (m *Mirror) RemoteTip(ctx context.Context, branch string) (string, error) {
	if err := CheckRefName(branch); err != nil {
		return "", err
	}
	ref := "refs/heads/" + branch
	// Through the mirror's origin when there is one, so that a URL with
	// credentials in it never appears in a process's arguments.
	args := []string{"ls-remote", "--end-of-options", m.remote(), ref}
	if m.originIs(m.remote()) {
		args = []string{"--git-dir", m.Dir, "ls-remote", "origin", ref}
	}
	out, err := m.git(ctx, m.timeout(), args...)
	if err != nil {
		return "", fmt.Errorf("ask %s for %s: %w", Redact(m.Remote), branch, err)
	}
	for _, line := range strings.Split(out, "\n") {
		sha, name, ok := strings.Cut(line, "\t")
		if ok && name == ref && IsSHA(sha) {
			return sha, nil
		}
	}
	return "", fmt.Errorf("branch %q: %w on %s", branch, ErrUnknownRevision, Redact(m.Remote))
}

// Redact hides the password of a remote URL (https://user:TOKEN@host/...),
// for messages and logs.
func Redact(remote string) string {
	u, err := url.Parse(remote)
	if err != nil || u.User == nil {
		return remote
	}
	if _, hasPassword := u.User.Password(); !hasPassword && (u.Scheme == "https" || u.Scheme == "http") {
		// https://TOKEN@host/...: the user name is the secret.
		u.User = url.User("xxxxx")
		return u.String()
	}
	return u.Redacted()
}

// Has reports whether the mirror holds commit sha.
func (m *Mirror) Has(ctx context.Context, sha string) bool {
	_, err := m.git(ctx, 10*time.Second, "--git-dir", m.Dir, "cat-file", "-e", sha+"^{commit}")
	return err == nil
}

// Resolve returns the commit a ref (branch, tag, or commit id prefix) names in the mirror.
func (m *Mirror) Resolve(ctx context.Context, ref string) (string, error) {
	if err := CheckRefName(ref); err != nil {
		return "", err
	}
	candidates := []string{"refs/heads/" + ref, "refs/tags/" + ref, ref}
	if strings.HasPrefix(ref, "refs/") {
		candidates = []string{ref}
	}
	for _, c := range candidates {
		out, err := m.git(ctx, 10*time.Second, "--git-dir", m.Dir, "rev-parse", "--verify", "--quiet", "--end-of-options", c+"^{commit}")
		if err == nil {
			return strings.TrimSpace(out), nil
		}
	}
	return "", fmt.Errorf("%q: %w", ref, ErrUnknownRevision)
}

// Subject returns the first line of commit's message.
func (m *Mirror) Subject(ctx context.Context, sha string) string {
	out, err := m.git(ctx, 10*time.Second, "--git-dir", m.Dir, "log", "-1", "--format=%s", sha)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// Behind counts the commits that to has and from lacks: how far a release
// of from is behind to.
func (m *Mirror) Behind(ctx context.Context, from, to string) (int, error) {
	out, err := m.git(ctx, 10*time.Second, "--git-dir", m.Dir, "rev-list", "--count", from+".."+to)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// IsAncestor reports whether a is an ancestor of b.
func (m *Mirror) IsAncestor(ctx context.Context, a, b string) bool {
	_, err := m.git(ctx, 10*time.Second, "--git-dir", m.Dir, "merge-base", "--is-ancestor", a, b)
	return err == nil
}

// Export writes the tree of commit sha into dir (which must exist), with no
// .git inside: a release can never be dirty.
func (m *Mirror) Export(ctx context.Context, sha, dir string) error {
	if !IsSHA(sha) {
		return fmt.Errorf("export: %q is not a commit id", sha)
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "--git-dir", m.Dir, "archive", "--format=tar", sha)
	cmd.Env = m.env()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	xerr := untar(out, dir)
	if xerr != nil {
		_, _ = io.Copy(io.Discard, out)
	}
	werr := cmd.Wait()
	if werr != nil {
		return fmt.Errorf("git archive %s: %w: %s", sha[:12], werr, strings.TrimSpace(stderr.String()))
	}
	if xerr != nil {
		return fmt.Errorf("extract %s: %w", sha[:12], xerr)
	}
	return nil
}

// untar extracts a git archive stream into dir. All writes go through
// os.Root: an entry can never land outside the release, not even through a
// symlink that an earlier entry of the same commit created.
func untar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive entry %q escapes the release", h.Name)
		}
		if parent := filepath.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
		case tar.TypeReg:
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
		}
	}
}

// ReadFile returns the content of path at commit sha ("" and false if absent).
func (m *Mirror) ReadFile(ctx context.Context, sha, path string) (string, bool) {
	out, err := m.git(ctx, 10*time.Second, "--git-dir", m.Dir, "cat-file", "blob", sha+":"+path)
	if err != nil {
		return "", false
	}
	return out, true
}
