package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/slipway-dev/slipway/internal/fsutil"
)

// applied is what run/applied.json records: a fingerprint of each part of
// the config that the live release was built or started with, so that a
// change to slipway.yml or to an env file takes effect at the next deploy
// even when the commit stays the same.
type applied struct {
	Commit string            `json:"commit"`
	Parts  map[string]string `json:"parts"`
	// Failed is the fingerprint of a changed config whose reconfigure or
	// rebuild failed (in ledger row FailedBy): it is not tried again
	// until it changes, so an agent never loops on it.
	Failed   string `json:"failed,omitempty"`
	FailedBy int64  `json:"failed_by,omitempty"`
}

// Parts of the config whose change needs a new release (a rebuild of the
// live commit); a change to any other part restarts the live release.
var rebuildParts = []string{"build", "shared"}

// configParts fingerprints the parts of the config that matter to a live
// release. Env files count by their contents: a token put into one takes
// effect. The hashes are of secrets too: the file is 0600, as the env
// files are.
func (e *Engine) configParts() map[string]string {
	c := e.Cfg
	parts := map[string]string{}
	put := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			b = []byte(err.Error())
		}
		sum := sha256.Sum256(b)
		parts[name] = hex.EncodeToString(sum[:12])
	}
	put("build", struct {
		Build   any
		Migrate any
	}{c.Build, c.Migrate})
	put("shared", c.Shared)
	put("services", struct {
		Manager, User string
		Services      any
	}{c.Manager, c.User, c.Services})
	put("require_env", c.RequireEnv)
	put("health", c.Health)
	put("smoke", c.Smoke)
	for name, file := range c.EnvFiles {
		put("env:"+name, struct {
			File string
			Vars map[string]string
		}{file, c.Env[name]})
	}
	return parts
}

// fingerprint is one hash of every part.
func fingerprint(parts map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(parts) {
		fmt.Fprintf(&b, "%s=%s\n", k, parts[k])
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:12])
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// configChange is how the config differs from what the live release was
// started with.
type configChange struct {
	parts []string // the changed parts, sorted
	// unrecorded: the host has no record of what the live release started
	// with (it was deployed by a slipway that kept none), so a change
	// cannot be ruled out: its services are restarted once, through the
	// checks, and the record written.
	unrecorded bool
	rebuild    bool  // a part that needs a new release changed
	failedBy   int64 // this very change failed before, in that ledger row
}

// action names what applying the change takes.
func (c configChange) action() string {
	if c.rebuild {
		return "rebuild"
	}
	return "reconfigure"
}

func (c configChange) String() string {
	if c.unrecorded {
		return "no record of the config the live release started with (run/applied.json is missing)"
	}
	if len(c.parts) == 0 {
		return "the live release runs with a config that failed its checks"
	}
	return "the config changed since the live release started (" + strings.Join(c.parts, ", ") + ")"
}

// readApplied reads run/applied.json; ok is false when there is none (a
// host deployed by a slipway that did not record it yet).
func (e *Engine) readApplied() (applied, bool, error) {
	b, err := os.ReadFile(e.Layout.AppliedFile())
	if errors.Is(err, os.ErrNotExist) {
		return applied{}, false, nil
	}
	if err != nil {
		return applied{}, false, err
	}
	var a applied
	if err := json.Unmarshal(b, &a); err != nil {
		return applied{}, false, fmt.Errorf("%s: %w", e.Layout.AppliedFile(), err)
	}
	return a, true, nil
}

// changedConfig compares the config with what commit's live release was
// started with; nil when nothing that matters changed. With no record at
// all, the change is unrecorded: a reconfigure that writes one.
func (e *Engine) changedConfig(commit string) *configChange {
	a, ok, err := e.readApplied()
	if err == nil && !ok {
		return &configChange{unrecorded: true}
	}
	if err != nil || a.Commit != commit {
		return nil
	}
	now := e.configParts()
	var c configChange
	for _, k := range sortedKeys(unionKeys(a.Parts, now)) {
		if a.Parts[k] != now[k] {
			c.parts = append(c.parts, k)
			if slices.Contains(rebuildParts, k) {
				c.rebuild = true
			}
		}
	}
	if a.Failed != "" && a.Failed == fingerprint(now) {
		c.failedBy = a.FailedBy
	}
	if len(c.parts) == 0 && c.failedBy == 0 {
		return nil
	}
	return &c
}

func unionKeys(a, b map[string]string) map[string]string {
	u := make(map[string]string, len(a)+len(b))
	for k := range a {
		u[k] = ""
	}
	for k := range b {
		u[k] = ""
	}
	return u
}

// recordApplied writes that the live release, of commit, now runs with the
// config as it is.
func (e *Engine) recordApplied(commit string) error {
	b, err := json.Marshal(applied{Commit: commit, Parts: e.configParts()})
	if err != nil {
		return err
	}
	return fsutil.WriteFile(e.Layout.AppliedFile(), b, 0o600)
}

// recordFailedConfig writes that the config as it is failed in ledger row
// id. inPlace says the services were restarted with it all the same (no
// other instance could keep serving): they run with it now, and a change
// back to the config before is a change too.
func (e *Engine) recordFailedConfig(id int64, inPlace bool) error {
	a, ok, err := e.readApplied()
	if err != nil {
		return err
	}
	now := e.configParts()
	if !ok {
		// An unrecorded change failed: the live release's config is still
		// unknown (no parts), but this one is not tried again.
		if a.Commit, err = e.Layout.SafeCommit(); err != nil {
			return err
		}
	}
	if inPlace {
		a.Parts = now
	}
	a.Failed, a.FailedBy = fingerprint(now), id
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return fsutil.WriteFile(e.Layout.AppliedFile(), b, 0o600)
}

// noteApplied records the config as applied to commit's live release, and
// says so in a step's detail only when it could not: the release stands
// either way, and at worst the next deploy restarts it once more.
func (e *Engine) noteApplied(commit string) string {
	if err := e.recordApplied(commit); err != nil {
		return "; could not record the config it runs with: " + err.Error()
	}
	return ""
}
