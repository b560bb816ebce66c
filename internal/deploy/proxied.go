package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/check"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
	"github.com/slipway-dev/slipway/internal/unit"
)

// ProxyName is the proxy's service name under the process manager (its
// systemd unit is unit.ProxyName).
const ProxyName = "slipway-proxy"

// instance is the spec of one instance of a proxied service, on port: its
// own name (pid file, env file) and unit, and PORT in its environment.
func instance(base service.Spec, app string, port int) service.Spec {
	s := base
	s.Name = fmt.Sprintf("%s.%d", base.Name, port)
	s.Unit = unit.InstanceName(app, base.Name, port)
	s.Port = port
	s.Env = append(append([]string(nil), base.Env...), "PORT="+strconv.Itoa(port), "SLIPWAY_SERVICE="+s.Name)
	return s
}

// proxyClient returns a client of the app's proxy, starting the proxy
// first when it does not answer.
func (e *Engine) proxyClient(ctx context.Context) (ProxyControl, error) {
	c := e.control()
	if c.Ping(ctx) == nil {
		return c, nil
	}
	spec, err := e.proxySpec()
	if err != nil {
		return nil, err
	}
	_ = e.Services.Stop(ctx, spec) // a proxy that no longer answers
	if err := e.Services.Start(ctx, spec); err != nil {
		return nil, fmt.Errorf("start the proxy: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			tail, _ := e.Services.Logs(ctx, spec, 10)
			return nil, fmt.Errorf("the proxy did not answer on %s within 10s; its last output:\n%s", e.Layout.ProxySocket(), tail)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c, nil
}

// usesProxy reports whether any service is behind the proxy.
func (e *Engine) usesProxy() bool {
	for _, s := range e.Cfg.Services {
		if s.Proxy != nil {
			return true
		}
	}
	return false
}

// proxyState reports the proxy as one more service, when the app uses it:
// running when it answers on its control socket.
func (e *Engine) proxyState(ctx context.Context) (ServiceStatus, bool) {
	if !e.usesProxy() {
		return ServiceStatus{}, false
	}
	st := ServiceStatus{Name: ProxyName}
	if spec, err := e.proxySpec(); err == nil {
		if ms, err := e.Services.Status(ctx, spec); err == nil {
			st.PID, st.Since, st.Restarts, st.Detail = ms.PID, ms.Since, ms.Restarts, ms.Detail
		}
	}
	if err := e.control().Ping(ctx); err != nil {
		st.PID = 0
		st.Detail = "does not answer on " + e.Layout.ProxySocket() + ": " + err.Error()
		return st, true
	}
	st.Running = true
	return st, true
}

// proxySpec is how a service manager runs `slipway proxy`.
func (e *Engine) proxySpec() (service.Spec, error) {
	bin, err := os.Executable()
	if err != nil {
		return service.Spec{}, err
	}
	cfgPath, err := filepath.Abs(e.Cfg.Path)
	if err != nil {
		return service.Spec{}, err
	}
	return service.Spec{
		App: e.Cfg.App, Name: ProxyName, Dir: e.Cfg.Root, Unit: unit.ProxyName(e.Cfg.App),
		// The config path goes through the environment: a command with
		// shell syntax in it would need quoting.
		Command:     bin + " proxy",
		Env:         append(run.BaseEnv(), "SLIPWAY_CONFIG="+cfgPath, "SLIPWAY_ROOT="+e.Cfg.Root, "SLIPWAY_SERVICE="+ProxyName),
		StopTimeout: 35 * time.Second,
	}, nil
}

// proxyListenFree refuses a proxied service's public address when a
// process other than slipway's proxy listens on it (the proxy could not
// take it at the switch).
func (e *Engine) proxyListenFree(ctx context.Context) error {
	c := e.control()
	for _, name := range e.Cfg.ServiceNames() {
		s := e.Cfg.Services[name]
		if s.Proxy == nil {
			continue
		}
		if r, ok, err := c.Route(ctx, s.Name); err == nil && ok && r.Listen == s.Proxy.Listen {
			continue // the proxy holds it
		}
		_, p, err := net.SplitHostPort(s.Proxy.Listen)
		port, _ := strconv.Atoi(p)
		if err != nil || port == 0 {
			continue
		}
		// The service itself, as it ran before it went behind the proxy,
		// hands the port over at the traffic step.
		old := e.spec(s, vars{}, nil)
		ownOld := func(pid int) bool {
			st, err := e.Services.Status(ctx, old)
			return err == nil && st.Running && st.PID > 0 && groupOf(pid) == groupOf(st.PID)
		}
		if err := service.CheckPort(service.Spec{Name: s.Name, Port: port}, ownOld); err != nil {
			return fmt.Errorf("proxy.listen %s: %w", s.Proxy.Listen, err)
		}
	}
	return nil
}

// activeInstance returns the spec of the instance the proxy sends s's
// traffic to, and false when it sends it nowhere yet.
func (e *Engine) activeInstance(ctx context.Context, base service.Spec) (service.Spec, string, bool) {
	r, ok, err := e.control().Route(ctx, base.Name)
	if err != nil || !ok {
		return base, "", false
	}
	inst, ok := e.instanceAt(base, r.Backend)
	return inst, r.Release, ok
}

// instanceAt is the spec of base's instance at addr (host:port).
func (e *Engine) instanceAt(base service.Spec, addr string) (service.Spec, bool) {
	_, p, err := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	if err != nil || port == 0 {
		return base, false
	}
	return instance(base, e.Cfg.App, port), true
}

// running reports whether inst runs.
func (e *Engine) running(ctx context.Context, inst service.Spec) bool {
	st, err := e.Services.Status(ctx, inst)
	return err == nil && st.Running
}

// startInstance readies an instance of release for proxied service s,
// without sending it traffic: the one serving already (then nothing is to
// switch), the instance held since the last switch when it runs release (a
// switch back is instant), or a new one started on a free port and healthy
// there. A new instance that never becomes healthy is stopped, and the old
// one keeps serving.
func (e *Engine) startInstance(ctx context.Context, s *config.Service, base service.Spec, release string) (inst service.Spec, toSwitch bool, msg string, err error) {
	c, err := e.proxyClient(ctx)
	if err != nil {
		return base, false, "", err
	}
	if _, ok, err := c.Route(ctx, s.Name); err == nil && !ok && e.running(ctx, base) {
		// The service runs without the proxy, on the port the proxy is
		// to listen on: a new instance now, the port at the traffic step.
		next, err := e.startNew(ctx, s, base)
		if err != nil {
			return base, false, "", err
		}
		e.setHandover(s.Name, base, true)
		return next, true, fmt.Sprintf("%s: %s started, healthy on its own port; %s takes over %s from the service at the traffic step", s.Name, next.Name, ProxyName, s.Proxy.Listen), nil
	}
	if err := c.Ensure(ctx, s.Name, s.Proxy.Listen, e.proxyHealthPath(s)); err != nil {
		return base, false, "", err
	}
	r, _, err := c.Route(ctx, s.Name)
	if err != nil {
		return base, false, "", err
	}
	if act, ok := e.instanceAt(base, r.Backend); ok && r.Release == release && e.running(ctx, act) {
		return act, false, fmt.Sprintf("%s: %s already serves this release", s.Name, act.Name), nil
	}
	if held, ok := e.instanceAt(base, r.Previous); ok && r.PreviousRelease == release && e.running(ctx, held) {
		if err := e.waitInstance(ctx, s, held); err == nil {
			return held, true, fmt.Sprintf("%s: %s, held since the last switch, is healthy", s.Name, held.Name), nil
		}
	}
	next, err := e.startNew(ctx, s, base)
	if err != nil {
		return base, false, "", err
	}
	return next, true, fmt.Sprintf("%s: %s started, healthy on its own port", s.Name, next.Name), nil
}

// startNew starts an instance of base on a free port and waits until it is
// healthy there; one that is not is stopped.
func (e *Engine) startNew(ctx context.Context, s *config.Service, base service.Spec) (service.Spec, error) {
	port, err := freePort()
	if err != nil {
		return base, err
	}
	next := instance(base, e.Cfg.App, port)
	if err := e.Services.Start(ctx, next); err != nil {
		// Whether it exits within the manager's first look or after:
		// either way nothing was switched to it.
		return base, fmt.Errorf("%s: the new instance on port %d did not start, the old one keeps serving: %w", s.Name, port, err)
	}
	if err := e.waitInstance(ctx, s, next); err != nil {
		_ = e.Services.Stop(context.WithoutCancel(ctx), next)
		return base, fmt.Errorf("%s: the new instance on port %d did not become healthy, the old one keeps serving: %w", s.Name, port, err)
	}
	return next, nil
}

// handOver stops old, the service as it ran without the proxy, and has
// the proxy take its port the moment it is free, serving inst from its
// first request. It returns how long the port was in between: from the
// stop's SIGTERM to the proxy's bind, an upper bound of the time a new
// connection could be refused.
func (e *Engine) handOver(ctx context.Context, c ProxyControl, s *config.Service, old, inst service.Spec, rel string) (time.Duration, error) {
	ctx = context.WithoutCancel(ctx)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(inst.Port))
	t0 := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e.Services.Stop(ctx, old) }()
	deadline := t0.Add(old.StopTimeout + 5*time.Second)
	for {
		err := c.Adopt(ctx, s.Name, s.Proxy.Listen, e.proxyHealthPath(s), addr, rel)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: the proxy could not take %s from the service within its stop_timeout: %w", s.Name, s.Proxy.Listen, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	gap := time.Since(t0)
	if err := <-stopped; err != nil {
		return gap, fmt.Errorf("stop %s: %w", old.Name, err)
	}
	return gap, nil
}

// switchTraffic sends each proxied service's traffic to the instance
// startAll readied. The instance that served stays up, held, until
// retire. After an error the proxy is asked what serves: a switch that
// took effect is not undone because its answer was lost.
func (e *Engine) switchTraffic(ctx context.Context, v vars) (string, error) {
	c := e.control()
	var done []string
	for _, name := range e.Cfg.ServiceNames() {
		inst, ok := e.readied(name)
		if !ok {
			continue
		}
		if old, ok := e.handover(name); ok {
			gap, err := e.handOver(ctx, c, e.Cfg.Services[name], old, inst, v.rel.Name)
			if err != nil {
				return strings.Join(done, "; "), err
			}
			e.setHandover(name, service.Spec{}, false)
			e.setReadied(name, service.Spec{}, false)
			done = append(done, fmt.Sprintf("%s: traffic -> %s; the port was handed over from the service to the proxy in %s", name, inst.Name, gap.Round(time.Millisecond)))
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(inst.Port))
		res, err := c.Switch(ctx, name, addr, v.rel.Name)
		if err != nil {
			if r, ok, rerr := c.Route(context.WithoutCancel(ctx), name); rerr != nil || !ok || r.Backend != addr {
				return strings.Join(done, "; "), fmt.Errorf("switch %s to %s: %w", name, inst.Name, err)
			}
		}
		e.setReadied(name, service.Spec{}, false)
		msg := fmt.Sprintf("%s: traffic -> %s", name, inst.Name)
		if res.Previous != "" {
			msg += fmt.Sprintf(" (the instance on %s held until the release is safe)", res.Previous)
		}
		done = append(done, msg)
	}
	return strings.Join(done, "; "), nil
}

// retire drains the instance each proxied service held since its last
// switch, stops it, and stops any other instance that does not serve (a
// crash between a start and a switch leaves one). The drain is bounded by
// drain_timeout alone: a cancelled deploy does not cut it short.
func (e *Engine) retire(ctx context.Context, v vars, cred *syscall.Credential) (string, error) {
	ctx = context.WithoutCancel(ctx)
	c := e.control()
	var done []string
	var errs []error
	for _, name := range e.Cfg.ServiceNames() {
		s := e.Cfg.Services[name]
		if s.Proxy == nil {
			continue
		}
		base := e.spec(s, v, cred)
		r, ok, err := c.Route(ctx, name)
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		if held, ok := e.instanceAt(base, r.Previous); ok {
			left, err := c.Drain(ctx, name, r.Previous, s.Proxy.DrainTimeout.D())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			msg := held.Name + " drained"
			if left > 0 {
				msg += fmt.Sprintf(" (%d requests still open at drain_timeout)", left)
			}
			done = append(done, msg)
		}
		keep := 0
		if act, ok := e.instanceAt(base, r.Backend); ok {
			keep = act.Port
		}
		stopped, err := e.stopStrays(ctx, base, keep)
		errs = append(errs, err)
		if len(stopped) > 0 {
			done = append(done, "stopped "+strings.Join(stopped, ", "))
		}
	}
	if len(done) == 0 {
		done = append(done, "no instance to retire")
	}
	return strings.Join(done, "; "), errors.Join(errs...)
}

// unitLister is a service manager that can list its units (systemd).
type unitLister interface {
	ListUnits(ctx context.Context, pattern string) ([]string, error)
}

// stopStrays stops instances of a service that do not serve (a crash
// between a start and a switch leaves one behind). The process manager
// knows them by their pid files, systemd by their template's name.
func (e *Engine) stopStrays(ctx context.Context, base service.Spec, keep int) ([]string, error) {
	ports := map[int]bool{}
	pids, _ := filepath.Glob(filepath.Join(e.Layout.RunDir(), base.Name+".*.pid"))
	for _, p := range pids {
		if port, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), base.Name+"."), ".pid")); err == nil {
			ports[port] = true
		}
	}
	var errs []error
	if l, ok := e.Services.(unitLister); ok {
		prefix := strings.TrimSuffix(unit.TemplateName(e.Cfg.App, base.Name), ".service") // app-web@
		units, err := l.ListUnits(ctx, prefix+"*.service")
		errs = append(errs, err)
		for _, u := range units {
			if port, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(u, prefix), ".service")); err == nil {
				ports[port] = true
			}
		}
	}
	var stopped []string
	for port := range ports {
		if port == keep {
			continue
		}
		inst := instance(base, e.Cfg.App, port)
		if !e.running(ctx, inst) {
			_ = e.Services.Stop(ctx, inst) // its pid file, or a failed unit
			continue
		}
		if err := e.Services.Stop(ctx, inst); err != nil {
			errs = append(errs, err)
			continue
		}
		stopped = append(stopped, inst.Name)
	}
	sort.Strings(stopped)
	return stopped, errors.Join(errs...)
}

// proxyHealthPath is what the proxy and the switch check on an instance:
// proxy.health, else the path of health.url, else /.
func (e *Engine) proxyHealthPath(s *config.Service) string {
	if s.Proxy.Health != "" {
		return s.Proxy.Health
	}
	if h := e.Cfg.Health; h != nil {
		if u, err := url.Parse(h.URL); err == nil && u.Path != "" {
			return u.Path
		}
	}
	return "/"
}

// waitInstance waits until a new instance answers its health path, while
// it keeps running.
func (e *Engine) waitInstance(ctx context.Context, s *config.Service, inst service.Spec) error {
	timeout, interval, failAfter := time.Minute, time.Second, config.DefaultFailAfter
	if h := e.Cfg.Health; h != nil {
		timeout, interval, failAfter = h.Timeout.D(), h.Interval.D(), h.FailAfter
	}
	req := check.Request{URL: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(inst.Port)) + e.proxyHealthPath(s), ExpectStatus: 200, FailAfter: failAfter}
	return check.WaitHealthy(ctx, req, timeout, interval, func() error {
		st, err := e.Services.Status(ctx, inst)
		if err != nil {
			return err
		}
		if !st.Running {
			tail, _ := e.Services.Logs(ctx, inst, 20)
			return &service.ExitedError{Service: inst.Name, ExitCode: -1, Log: tail}
		}
		return nil
	})
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pauseTraffic holds the requests of every proxied service at the proxy
// (up to limit) and returns the function that lets them go.
func (e *Engine) pauseTraffic(ctx context.Context, limit time.Duration) (func(), error) {
	c, err := e.proxyClient(ctx)
	if err != nil {
		return nil, err
	}
	var paused []string
	resume := func() {
		for _, name := range paused {
			_ = c.Resume(context.WithoutCancel(ctx), name)
		}
	}
	for _, name := range e.Cfg.ServiceNames() {
		s := e.Cfg.Services[name]
		if s.Proxy == nil {
			continue
		}
		if err := c.Ensure(ctx, s.Name, s.Proxy.Listen, e.proxyHealthPath(s)); err != nil {
			resume()
			return nil, err
		}
		if err := c.Pause(ctx, s.Name, limit); err != nil {
			resume()
			return nil, err
		}
		paused = append(paused, s.Name)
	}
	return resume, nil
}

// groupOf is pid's process group (-1 when it is gone).
func groupOf(pid int) int {
	pg, err := syscall.Getpgid(pid)
	if err != nil {
		return -1
	}
	return pg
}

// proxyHolds reports whether pid, holding a port, is slipway's proxy with
// a route for service: the service was proxied and runs in restart mode
// now.
func (e *Engine) proxyHolds(ctx context.Context, service string, pid int) bool {
	spec, err := e.proxySpec()
	if err != nil {
		return false
	}
	st, err := e.Services.Status(ctx, spec)
	if err != nil || !st.Running || groupOf(pid) != groupOf(st.PID) {
		return false
	}
	_, ok, err := e.control().Route(ctx, service)
	return err == nil && ok
}

// leaveProxy closes the proxy's route of a service that runs in restart
// mode now, so that the service can bind the port; the proxy itself stops
// when no route is left. It reports whether there was a route.
func (e *Engine) leaveProxy(ctx context.Context, spec service.Spec) (bool, error) {
	c := e.control()
	if c.Ping(ctx) != nil {
		return false, nil
	}
	if _, ok, err := c.Route(ctx, spec.Name); err != nil || !ok {
		return false, err
	}
	if err := c.Remove(ctx, spec.Name); err != nil {
		return false, fmt.Errorf("%s leaves the proxy: %w", spec.Name, err)
	}
	if rs, err := c.Routes(ctx); err == nil && len(rs) == 0 && !e.usesProxy() {
		if ps, err := e.proxySpec(); err == nil {
			_ = e.Services.Stop(ctx, ps)
		}
	}
	return true, nil
}
