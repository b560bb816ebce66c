// Package proxy is slipway's zero-downtime switch: a reverse proxy that owns
// each proxied service's public listener and sends its traffic to one
// instance at a time. A deploy starts the new release's instance on a port
// of its own, checks it, then switches the route in one atomic step; the old
// instance drains (its in-flight requests, streams and WebSockets finish, up
// to a timeout) before it is stopped.
//
// The proxy runs as its own process (`slipway proxy`), controlled over a
// unix socket (Client), with its routes persisted and restored at start, so
// the agent and the CLI come and go without dropping a request.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/fsutil"
)

// Server is the proxy process: routes, their listeners, and the control API.
type Server struct {
	// StatePath is where the routes are persisted (run/proxy.json).
	StatePath string
	// HealthEvery is the interval of the health checks (1s when 0).
	HealthEvery time.Duration
	Log         *slog.Logger

	mu        sync.Mutex
	routes    map[string]*route
	transport *transport
	client    *http.Client
}

// RouteState is one route as persisted and reported.
type RouteState struct {
	Service string `json:"service"`
	Listen  string `json:"listen"`
	Health  string `json:"health,omitempty"`
	Backend string `json:"backend,omitempty"` // host:port of the active instance
	Release string `json:"release,omitempty"` // the release it runs
	// Previous is the instance that served before the last switch, kept
	// until it is drained: a switch back to it is instant.
	Previous        string `json:"previous,omitempty"`
	PreviousRelease string `json:"previous_release,omitempty"`
	// Reported only:
	Healthy  bool      `json:"healthy"`
	Checked  time.Time `json:"checked,omitzero"`
	Problem  string    `json:"problem,omitempty"`
	InFlight int64     `json:"inflight"`
	Paused   bool      `json:"paused"`
	Held     int64     `json:"held"` // requests waiting for the pause to end
}

type state struct {
	Routes []RouteState `json:"routes"`
}

func (s *Server) init() {
	if s.routes != nil {
		return
	}
	s.routes = map[string]*route{}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.transport = newTransport()
	s.client = &http.Client{Transport: s.transport.std, Timeout: 2 * time.Second}
}

// Restore loads the persisted routes and opens their listeners.
func (s *Server) Restore() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	b, err := os.ReadFile(s.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("proxy state %s: %w", s.StatePath, err)
	}
	for _, r := range st.Routes {
		rt, err := s.openRoute(r.Service, r.Listen, r.Health)
		if err != nil {
			return err
		}
		if r.Backend != "" {
			rt.active.Store(newBackend(r.Backend, r.Release, s.transport, s.Log))
		}
		if r.Previous != "" {
			rt.previous = newBackend(r.Previous, r.PreviousRelease, s.transport, s.Log)
		}
		s.Log.Info("route restored", "service", r.Service, "listen", r.Listen, "backend", r.Backend)
	}
	return nil
}

// openRoute starts serving a route on its listener.
func (s *Server) openRoute(service, listen, health string) (*route, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", service, err)
	}
	rt := &route{service: service, listen: listen, health: health, log: s.Log, ln: ln}
	rt.srv = &http.Server{
		Handler:           rt,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No read or write timeout: streams and WebSockets last.
		// A handed-off connection is counted done once its replayed
		// request is answered (see route.shutdown).
		ConnState: func(c net.Conn, state http.ConnState) {
			if rc, ok := c.(*replayConn); ok && (state == http.StateIdle || state == http.StateHijacked || state == http.StateClosed) {
				rc.count()
			}
		},
	}
	rt.fast = rt.newFront()
	go func() { _ = rt.fast.Serve(ln) }()
	s.routes[service] = rt
	return rt, nil
}

// Ensure makes the route exist with this listener and health path.
func (s *Server) Ensure(service, listen, health string) error {
	return s.EnsureServing(service, listen, health, "", "")
}

// EnsureServing is Ensure that, when it opens the route, sends its traffic
// to backend (running release) from its first request: the handover of a
// port from a service that ran without the proxy.
func (s *Server) EnsureServing(service, listen, health, backend, release string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	rt := s.routes[service]
	switch {
	case rt == nil:
		rt, err := s.openRoute(service, listen, health)
		if err != nil {
			return err
		}
		if backend != "" {
			rt.active.Store(newBackend(backend, release, s.transport, s.Log))
		}
	case rt.listen != listen:
		// A new address: serve it first, then close the old listener.
		next, err := s.openRoute(service, listen, health)
		if err != nil {
			s.routes[service] = rt
			return err
		}
		next.active.Store(rt.active.Load())
		go rt.shutdown(context.Background())
	default:
		rt.mu.Lock()
		rt.health = health
		rt.mu.Unlock()
	}
	return s.persist()
}

// Remove closes the route's listener, letting its open requests finish,
// and forgets it (a service that no longer runs behind the proxy).
func (s *Server) Remove(service string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	rt := s.routes[service]
	if rt == nil {
		return nil
	}
	delete(s.routes, service)
	for _, b := range []*backend{rt.active.Load(), rt.previous} {
		if b != nil {
			defer s.transport.closeIdle(b.addr)
		}
	}
	// Close the listener now, so that the port is free when this returns;
	// the connections already accepted finish in the background.
	_ = rt.ln.Close()
	go rt.shutdown(context.Background())
	return s.persist()
}

// SwitchResult is what a switch did.
type SwitchResult struct {
	Previous        string `json:"previous,omitempty"`
	PreviousRelease string `json:"previous_release,omitempty"`
}

// Switch sends the route's traffic to addr from now on. The new state is
// persisted first: a switch that returns an error changed nothing. The
// instance that served until now becomes the route's previous one, which
// keeps its in-flight requests and can be switched back to at once until
// it is drained (Drain).
func (s *Server) Switch(service, addr, release string) (SwitchResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.routes[service]
	if rt == nil {
		return SwitchResult{}, fmt.Errorf("no route for service %s", service)
	}
	old := rt.active.Load()
	if old != nil && old.addr == addr {
		return SwitchResult{Previous: prevAddr(rt.previous), PreviousRelease: prevRelease(rt.previous)}, nil
	}
	next := newBackend(addr, release, s.transport, s.Log)
	if p := rt.previous; p != nil && p.addr == addr {
		next = p // back to the held instance, with its requests
		next.release = release
	}
	prev := rt.previous
	rt.previous = old
	if err := s.persistWith(service, next); err != nil {
		rt.previous = prev
		return SwitchResult{}, fmt.Errorf("persist the switch (nothing switched): %w", err)
	}
	rt.active.Store(next)
	rt.mu.Lock()
	rt.healthy, rt.problem, rt.checked = true, "", time.Now()
	rt.mu.Unlock()
	var res SwitchResult
	if old != nil {
		res.Previous, res.PreviousRelease = old.addr, old.release
	}
	s.Log.Info("switched", "service", service, "backend", addr, "release", release, "previous", res.Previous)
	return res, nil
}

func prevAddr(b *backend) string {
	if b == nil {
		return ""
	}
	return b.addr
}

func prevRelease(b *backend) string {
	if b == nil {
		return ""
	}
	return b.release
}

// Drain waits until the route's previous instance, addr, has no request in
// flight, up to timeout, then forgets it: it is about to be stopped. The
// wait is the proxy's own: a caller that goes away does not cut it short.
// It reports how many requests were still open at the timeout.
func (s *Server) Drain(service, addr string, timeout time.Duration) (int64, error) {
	s.mu.Lock()
	rt := s.routes[service]
	if rt == nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("no route for service %s", service)
	}
	if a := rt.active.Load(); a != nil && a.addr == addr {
		s.mu.Unlock()
		return 0, fmt.Errorf("%s serves service %s: switch away from it first", addr, service)
	}
	b := rt.previous
	s.mu.Unlock()
	if b == nil || b.addr != addr {
		return 0, nil // not known here: nothing in flight through us
	}
	left := drain(b, timeout)
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt.previous == b {
		rt.previous = nil
		s.transport.closeIdle(addr)
		if err := s.persist(); err != nil {
			return left, err
		}
	}
	s.Log.Info("drained", "service", service, "backend", addr, "left", left)
	return left, nil
}

// Pause holds the route's new requests for up to limit; Resume lets them go.
func (s *Server) Pause(service string, limit time.Duration) error {
	return s.withRoute(service, func(rt *route) { rt.gate.pause(limit) })
}

// Resume ends a pause.
func (s *Server) Resume(service string) error {
	return s.withRoute(service, func(rt *route) { rt.gate.resume() })
}

func (s *Server) withRoute(service string, fn func(*route)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.routes[service]
	if rt == nil {
		return fmt.Errorf("no route for service %s", service)
	}
	fn(rt)
	return nil
}

// Routes reports every route.
func (s *Server) Routes() []RouteState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RouteState, 0, len(s.routes))
	for _, rt := range s.routes {
		r := RouteState{Service: rt.service, Listen: rt.listen, Health: rt.health, Paused: rt.gate.paused(), Held: rt.gate.held.Load()}
		if b := rt.active.Load(); b != nil {
			r.Backend, r.Release, r.InFlight = b.addr, b.release, b.inflight.Load()
		}
		r.Previous, r.PreviousRelease = prevAddr(rt.previous), prevRelease(rt.previous)
		rt.mu.Lock()
		r.Healthy, r.Checked, r.Problem = rt.healthy, rt.checked, rt.problem
		rt.mu.Unlock()
		if r.Checked.IsZero() && r.Backend != "" {
			r.Problem = "not checked yet"
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// persist writes the routes; the caller holds s.mu.
func (s *Server) persist() error { return s.persistWith("", nil) }

// persistWith writes the routes as they will be once service's traffic
// goes to next.
func (s *Server) persistWith(service string, next *backend) error {
	var st state
	for _, rt := range s.routes {
		r := RouteState{Service: rt.service, Listen: rt.listen, Health: rt.health}
		b := rt.active.Load()
		if rt.service == service {
			b = next
		}
		if b != nil {
			r.Backend, r.Release = b.addr, b.release
		}
		r.Previous, r.PreviousRelease = prevAddr(rt.previous), prevRelease(rt.previous)
		st.Routes = append(st.Routes, r)
	}
	sort.Slice(st.Routes, func(i, j int) bool { return st.Routes[i].Service < st.Routes[j].Service })
	b, _ := json.MarshalIndent(st, "", "  ")
	return fsutil.WriteFile(s.StatePath, b, 0o600)
}

// checkHealth runs the routes' health checks until ctx ends.
func (s *Server) checkHealth(ctx context.Context) {
	every := s.HealthEvery
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		s.mu.Lock()
		rts := make([]*route, 0, len(s.routes))
		for _, rt := range s.routes {
			rts = append(rts, rt)
		}
		s.mu.Unlock()
		for _, rt := range rts {
			rt.check(ctx, s.client)
		}
		s.transport.sweep()
	}
}

// Serve runs the control API on the unix socket sock and the health checks
// until ctx ends; then it stops accepting, lets in-flight requests finish
// (up to drainTimeout) and returns.
func (s *Server) Serve(ctx context.Context, sock string, drainTimeout time.Duration) error {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		_ = ln.Close()
		return err
	}
	ctl := &http.Server{Handler: s.controlMux(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ctl.Serve(ln) }()
	go s.checkHealth(ctx)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	_ = ctl.Shutdown(sctx)
	s.mu.Lock()
	var wg sync.WaitGroup
	for _, rt := range s.routes {
		wg.Go(func() { rt.shutdown(sctx) })
	}
	s.mu.Unlock()
	wg.Wait()
	return nil
}
