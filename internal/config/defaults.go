package config

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The defaults docs/config.md documents.
const (
	DefaultBranch       = "main"
	DefaultKeepReleases = 5
	DefaultStepTimeout  = Duration(10 * time.Minute)
	DefaultStopTimeout  = Duration(30 * time.Second)
	DefaultDrainTimeout = Duration(30 * time.Second)
	DefaultSnapshotKeep = 10
	DefaultHealthWait   = Duration(60 * time.Second)
	DefaultHealthEvery  = Duration(time.Second)
	// DefaultSettle is health.settle when not written, and how long the
	// services must stay up without a health: section.
	DefaultSettle       = Duration(5 * time.Second)
	DefaultCheckTimeout = Duration(30 * time.Second)
	// DefaultFailAfter is health.fail_after when not written.
	DefaultFailAfter = 5
)

// pid1Comm holds the name of PID 1; "systemd" there makes systemd the
// default manager.
var pid1Comm = "/proc/1/comm"

// defaultManager is systemd when PID 1 is systemd, else process.
func defaultManager() string {
	b, err := os.ReadFile(pid1Comm)
	if err == nil && strings.TrimSpace(string(b)) == "systemd" {
		return ManagerSystemd
	}
	return ManagerProcess
}

// resolveRoot returns root as an absolute, clean path: /opt/<app> when it is
// not set, relative to the config file's directory when it is relative.
func resolveRoot(file, root, app string) string {
	switch {
	case root == "" && app == "":
		return ""
	case root == "":
		return "/opt/" + app
	case filepath.IsAbs(root):
		return filepath.Clean(root)
	}
	return filepath.Join(configDir(file), root)
}

// resolveRepo makes a relative local repository path absolute, relative to
// the config file's directory, since git runs elsewhere. URLs (scheme://) and
// scp-like addresses (host:path) stay as written.
func resolveRepo(file, repo string) string {
	if repo == "" || filepath.IsAbs(repo) || strings.Contains(repo, "://") {
		return repo
	}
	if host, _, ok := strings.Cut(repo, ":"); ok && !strings.Contains(host, "/") {
		return repo
	}
	return filepath.Join(configDir(file), repo)
}

// configDir is the absolute directory of the config file.
func configDir(file string) string {
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return filepath.Dir(file)
	}
	return dir
}

// applyDefaults fills in what the file leaves out. ix tells a value written
// as zero (keep_releases: 0) from one not written.
func applyDefaults(c *Config, ix *index) {
	c.Root = resolveRoot(c.Path, c.Root, c.App)
	c.Repo = resolveRepo(c.Path, c.Repo)
	if c.Branch == "" {
		c.Branch = DefaultBranch
	}
	if !ix.has("keep_releases") {
		c.KeepReleases = DefaultKeepReleases
	}
	if c.Manager == "" {
		c.Manager = defaultManager()
	}
	for i := range c.Build {
		s := &c.Build[i]
		if s.Name == "" {
			s.Name = strings.TrimSpace(s.Run)
		}
		if s.Timeout == 0 {
			s.Timeout = DefaultStepTimeout
		}
	}
	if m := c.Migrate; m != nil {
		if m.Name == "" {
			m.Name = "migrate"
		}
		if m.Timeout == 0 {
			m.Timeout = DefaultStepTimeout
		}
	}
	for name, s := range c.Services {
		if s == nil {
			continue // validate reports it
		}
		s.Name = name
		if s.Unit == "" && c.App != "" {
			s.Unit = c.App + "-" + name + ".service"
		}
		if s.StopTimeout == 0 {
			s.StopTimeout = DefaultStopTimeout
		}
		if s.Proxy != nil && s.Proxy.DrainTimeout == 0 {
			s.Proxy.DrainTimeout = DefaultDrainTimeout
		}
	}
	if sn := c.Snapshot; sn != nil {
		if !ix.has(keyPath{"snapshot", "keep"}.String()) {
			sn.Keep = DefaultSnapshotKeep
		}
		if sn.RestoreData == "" {
			sn.RestoreData = RestoreDataAuto
		}
		if sn.Timeout == 0 {
			sn.Timeout = DefaultStepTimeout
		}
	}
	if h := c.Health; h != nil {
		if h.ExpectStatus == 0 {
			h.ExpectStatus = 200
		}
		if h.Timeout == 0 {
			h.Timeout = DefaultHealthWait
		}
		if h.Interval == 0 {
			h.Interval = DefaultHealthEvery
		}
		if !ix.has(keyPath{"health", "settle"}.String()) {
			h.Settle = DefaultSettle
		}
		if !ix.has(keyPath{"health", "fail_after"}.String()) {
			h.FailAfter = DefaultFailAfter
		}
	}
	for i := range c.Smoke {
		ch := &c.Smoke[i]
		if ch.URL != "" {
			if ch.Method == "" {
				ch.Method = "GET"
			}
			ch.Method = strings.ToUpper(ch.Method)
			if ch.ExpectStatus == 0 {
				ch.ExpectStatus = 200
			}
		}
		if ch.Timeout == 0 {
			ch.Timeout = DefaultCheckTimeout
		}
		if ch.Name == "" {
			if ch.URL != "" {
				ch.Name = ch.Method + " " + ch.URL
			} else {
				ch.Name = strings.TrimSpace(ch.Run)
			}
		}
	}
}
