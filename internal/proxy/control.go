package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// The control API, JSON over HTTP on the unix socket:
//
//	GET  /v1/routes                     every route
//	PUT  /v1/routes/{service}           {listen, health[, backend, release]}: make the route exist
//	DELETE /v1/routes/{service}         close its listener and forget it
//	POST /v1/routes/{service}/switch    {backend, release}
//	POST /v1/routes/{service}/drain     {backend, timeout}
//	POST /v1/routes/{service}/pause     {limit}
//	POST /v1/routes/{service}/resume
//
// The socket is 0600: whoever can open it runs the app's deploys.
func (s *Server) controlMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, _ *http.Request) { reply(w, s.Routes(), nil) })
	mux.HandleFunc("PUT /v1/routes/{service}", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Listen, Health, Backend, Release string }
		if !decode(w, r, &body) {
			return
		}
		if body.Backend != "" {
			if _, _, err := net.SplitHostPort(body.Backend); err != nil {
				http.Error(w, "backend: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		reply(w, struct{}{}, s.EnsureServing(r.PathValue("service"), body.Listen, body.Health, body.Backend, body.Release))
	})
	mux.HandleFunc("DELETE /v1/routes/{service}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, s.Remove(r.PathValue("service")))
	})
	mux.HandleFunc("POST /v1/routes/{service}/switch", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Backend, Release string }
		if !decode(w, r, &body) {
			return
		}
		if _, _, err := net.SplitHostPort(body.Backend); err != nil {
			http.Error(w, "backend: "+err.Error(), http.StatusBadRequest)
			return
		}
		res, err := s.Switch(r.PathValue("service"), body.Backend, body.Release)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/routes/{service}/drain", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Backend string
			Timeout time.Duration
		}
		if !decode(w, r, &body) {
			return
		}
		left, err := s.Drain(r.PathValue("service"), body.Backend, body.Timeout)
		reply(w, map[string]int64{"left": left}, err)
	})
	mux.HandleFunc("POST /v1/routes/{service}/pause", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Limit time.Duration }
		if !decode(w, r, &body) {
			return
		}
		if body.Limit <= 0 {
			body.Limit = maxPauseWait
		}
		reply(w, struct{}{}, s.Pause(r.PathValue("service"), body.Limit))
	})
	mux.HandleFunc("POST /v1/routes/{service}/resume", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, s.Resume(r.PathValue("service")))
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		if strings.HasPrefix(err.Error(), "no route") {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Client talks to a running proxy over its control socket.
type Client struct {
	Sock string
	http *http.Client
}

// NewClient returns a client of the proxy listening on sock.
func NewClient(sock string) *Client {
	return &Client{Sock: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}}
}

// callTimeout bounds every control call but a drain: a wedged proxy must
// not hang status or a stop.
const callTimeout = 10 * time.Second

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	return c.callWithin(ctx, callTimeout, method, path, in, out)
}

func (c *Client) callWithin(ctx context.Context, timeout time.Duration, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://proxy"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("proxy %s: %w", c.Sock, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("proxy: %s", strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Ping reports whether the proxy answers.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.call(ctx, http.MethodGet, "/v1/routes", nil, nil)
}

// Routes returns every route.
func (c *Client) Routes(ctx context.Context) ([]RouteState, error) {
	var rs []RouteState
	return rs, c.call(ctx, http.MethodGet, "/v1/routes", nil, &rs)
}

// Route returns one route; ok is false when the proxy has none for service.
func (c *Client) Route(ctx context.Context, service string) (r RouteState, ok bool, err error) {
	rs, err := c.Routes(ctx)
	for _, r := range rs {
		if r.Service == service {
			return r, true, nil
		}
	}
	return RouteState{}, false, err
}

// Ensure makes the route exist.
func (c *Client) Ensure(ctx context.Context, service, listen, health string) error {
	return c.call(ctx, http.MethodPut, "/v1/routes/"+service, map[string]string{"listen": listen, "health": health}, nil)
}

// Adopt makes the route exist, serving backend from its first request when
// it is new (a handover from a service that ran without the proxy).
func (c *Client) Adopt(ctx context.Context, service, listen, health, backend, release string) error {
	return c.call(ctx, http.MethodPut, "/v1/routes/"+service, map[string]string{"listen": listen, "health": health, "backend": backend, "release": release}, nil)
}

// Remove closes the route's listener and forgets the route.
func (c *Client) Remove(ctx context.Context, service string) error {
	return c.call(ctx, http.MethodDelete, "/v1/routes/"+service, nil, nil)
}

// Switch moves the route to backend; the instance that served becomes the
// route's previous one.
func (c *Client) Switch(ctx context.Context, service, backend, release string) (SwitchResult, error) {
	var res SwitchResult
	err := c.call(ctx, http.MethodPost, "/v1/routes/"+service+"/switch",
		map[string]any{"backend": backend, "release": release}, &res)
	return res, err
}

// Drain waits until the route's previous instance backend has no request
// in flight (up to timeout), and returns how many were left.
func (c *Client) Drain(ctx context.Context, service, backend string, timeout time.Duration) (int64, error) {
	var res struct{ Left int64 }
	err := c.callWithin(ctx, timeout+callTimeout, http.MethodPost, "/v1/routes/"+service+"/drain",
		map[string]any{"backend": backend, "timeout": timeout}, &res)
	return res.Left, err
}

// Pause holds the route's requests for up to limit.
func (c *Client) Pause(ctx context.Context, service string, limit time.Duration) error {
	return c.call(ctx, http.MethodPost, "/v1/routes/"+service+"/pause", map[string]any{"limit": limit}, nil)
}

// Resume ends a pause.
func (c *Client) Resume(ctx context.Context, service string) error {
	return c.call(ctx, http.MethodPost, "/v1/routes/"+service+"/resume", map[string]any{}, nil)
}
