package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/service"
)

// Status is what `slipway status` reports.
type Status struct {
	App       string       `json:"app"`
	Root      string       `json:"root"`
	Current   *ReleaseInfo `json:"current"`
	Safe      string       `json:"safe_commit"`
	RemoteTip string       `json:"remote_tip,omitempty"`
	RemoteErr string       `json:"remote_error,omitempty"`
	// Behind is how many commits the live release lacks of the remote tip.
	Behind    int             `json:"behind,omitempty"`
	Services  []ServiceStatus `json:"services"`
	Healthy   bool            `json:"healthy"`
	HealthErr string          `json:"health_error,omitempty"`
	Lock      *LockInfo       `json:"lock,omitempty"`
	Last      *ledger.Deploy  `json:"last_deploy,omitempty"`
	// Good are the kept releases that once passed every check, newest
	// first: where `slipway rollback --to` may go.
	Good []ReleaseInfo `json:"good_releases,omitempty"`
}

// ReleaseInfo names a release.
type ReleaseInfo struct {
	Name    string `json:"name"`
	Commit  string `json:"commit"`
	Version string `json:"version"`
}

// ServiceStatus is one service's state.
type ServiceStatus struct {
	Name    string    `json:"name"`
	Running bool      `json:"running"`
	PID     int       `json:"pid,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Detail  string    `json:"detail,omitempty"`
	// Restarts counts the times the service manager brought it back after
	// it failed, since the last deploy started it.
	Restarts int `json:"restarts"`
	// Stopped: an operator stopped it (`slipway stop`); it is not down.
	Stopped bool `json:"stopped,omitempty"`
}

// LockInfo is the deploy lock's state.
type LockInfo struct {
	Held   bool        `json:"held"`
	Frozen bool        `json:"frozen"`
	Holder lock.Holder `json:"holder"`
}

// ServiceStates reports the live release's services.
func (e *Engine) ServiceStates(ctx context.Context) []ServiceStatus {
	cur := e.liveRelease()
	return e.serviceStates(ctx, vars{rel: cur})
}

func (e *Engine) serviceStates(ctx context.Context, v vars) []ServiceStatus {
	var out []ServiceStatus
	for _, spec := range e.specs(ctx, v, nil) {
		st, err := e.Services.Status(ctx, spec)
		ss := ServiceStatus{Name: spec.Name, Running: st.Running, PID: st.PID, Since: st.Since, Detail: st.Detail, Restarts: st.Restarts,
			Stopped: e.isStopped(baseName(spec.Name))}
		if err != nil {
			ss.Detail = err.Error()
		}
		out = append(out, ss)
	}
	return out
}

// Status gathers the host's state. It asks the remote for the branch tip
// unless offline.
func (e *Engine) Status(ctx context.Context, offline bool) (Status, error) {
	s := Status{App: e.Cfg.App, Root: e.Cfg.Root}
	var err error
	if s.Safe, err = e.Layout.SafeCommit(); err != nil {
		return s, err
	}
	var cur release.Release
	if name, _ := e.Layout.Current(); name != "" {
		if cur, err = e.Layout.Open(name); err == nil {
			s.Current = &ReleaseInfo{Name: cur.Name, Commit: cur.Commit, Version: cur.Version}
		}
	}
	v := vars{rel: cur}
	s.Services = e.serviceStates(ctx, v)
	proxyDown := ""
	if p, ok := e.proxyState(ctx); ok {
		s.Services = append(s.Services, p)
		if !p.Running {
			proxyDown = "the proxy is down: " + p.Detail
		}
	}
	if cur.Name != "" {
		if _, err := e.healthyNow(ctx, v); err != nil {
			s.HealthErr = err.Error()
		} else if proxyDown != "" {
			s.HealthErr = proxyDown
		} else {
			s.Healthy = true
		}
	} else {
		s.HealthErr = "no release is live"
	}
	if h, held, err := lock.Status(e.Layout.LockFile()); err == nil && (held || h.Frozen) {
		s.Lock = &LockInfo{Held: held, Frozen: h.Frozen, Holder: h}
	}
	if d, err := e.Ledger.Last(ctx); err == nil {
		s.Last = &d
	}
	if good, err := e.Ledger.LastGoodReleases(ctx, 0); err == nil {
		for _, d := range good {
			if r, err := e.Layout.Open(d.Release); err == nil {
				s.Good = append(s.Good, ReleaseInfo{Name: r.Name, Commit: r.Commit, Version: r.Version})
			}
		}
	}
	if !offline {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if tip, err := e.Mirror.RemoteTip(tctx, e.Cfg.Branch); err != nil {
			s.RemoteErr = err.Error()
		} else {
			s.RemoteTip = tip
			s.Behind = e.Behind(tctx, s)
		}
	}
	return s, nil
}

// Behind is how many commits the live release of s lacks of s.RemoteTip
// (0 when it is not known).
func (e *Engine) Behind(ctx context.Context, s Status) int {
	if s.Current == nil || s.RemoteTip == "" || s.RemoteTip == s.Current.Commit {
		return 0
	}
	n, _ := e.Mirror.Behind(ctx, s.Current.Commit, s.RemoteTip)
	return n
}

// ServiceSpec is how the live release runs service name: for a proxied
// service, the instance that serves.
func (e *Engine) ServiceSpec(ctx context.Context, name string) (service.Spec, error) {
	s := e.Cfg.Services[name]
	if s == nil {
		return service.Spec{}, e.unknownService(name)
	}
	cur := e.liveRelease()
	spec := e.spec(s, vars{rel: cur}, nil)
	if s.Proxy != nil {
		spec, _, _ = e.activeInstance(ctx, spec)
	}
	return spec, nil
}

// ServiceLog is the last lines of service name's output, as its service
// manager keeps it.
func (e *Engine) ServiceLog(ctx context.Context, name string, lines int) (string, error) {
	spec, err := e.ServiceSpec(ctx, name)
	if err != nil {
		return "", err
	}
	return e.Services.Logs(ctx, spec, lines)
}

// liveRelease is the release `current` names (zero when none is).
func (e *Engine) liveRelease() release.Release {
	var r release.Release
	if name, _ := e.Layout.Current(); name != "" {
		r, _ = e.Layout.Open(name)
	}
	return r
}

// unknownService is the error of a service name the config does not have.
func (e *Engine) unknownService(name string) error {
	return fmt.Errorf("%w %q (the config has: %s)", ErrUnknownService, name, strings.Join(e.Cfg.ServiceNames(), ", "))
}
