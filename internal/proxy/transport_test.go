package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// backendServer is a loopback HTTP server that counts the connections its
// requests came on (the proxy's health checks aside) and reports each of
// them closed.
type backendServer struct {
	addr   string
	srv    *http.Server
	mu     sync.Mutex
	conns  map[string]bool // remote address → served a request
	closed chan struct{}   // one value per such connection closed
}

func startBackend(t *testing.T, h http.Handler, idle time.Duration) *backendServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backendServer{addr: ln.Addr().String(), conns: map[string]bool{}, closed: make(chan struct{}, 1000)}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			b.mu.Lock()
			b.conns[r.RemoteAddr] = true
			b.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
	b.srv = &http.Server{Handler: counted, IdleTimeout: idle, ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(c net.Conn, s http.ConnState) {
			if s != http.StateClosed && s != http.StateHijacked {
				return
			}
			b.mu.Lock()
			served := b.conns[c.RemoteAddr().String()]
			b.mu.Unlock()
			if served {
				b.closed <- struct{}{}
			}
		}}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *backendServer) connections() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (b *backendServer) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-b.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend saw no connection close within 5s")
	}
}

// serving starts a proxy whose web route sends its traffic to b.
func serving(t *testing.T, b *backendServer) (*Server, string) {
	t.Helper()
	s, listen := newProxy(t)
	if _, err := s.Switch("web", b.addr, "r1"); err != nil {
		t.Fatal(err)
	}
	return s, "http://" + listen
}

func answering(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
}

// do sends one request with a client of its own (a connection of its own
// to the proxy) and returns the status and body.
func do(t *testing.T, method, url string, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Trailer
}

func TestTransportKeepsConnectionsAlive(t *testing.T) {
	b := startBackend(t, answering("ok"), 0)
	_, url := serving(t, b)
	for i := range 50 {
		method := http.MethodGet
		if i%5 == 0 {
			method = http.MethodHead // no body to read: reused all the same
		}
		if code, _, _ := do(t, method, url+"/", nil); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if n := b.connections(); n != 1 {
		t.Fatalf("50 requests one after another took %d connections to the instance, want 1", n)
	}
}

// An instance that closes idle connections (Node closes them after 5 s)
// costs no request, including one that may not be sent twice.
func TestTransportIdleConnectionClosedByTheInstance(t *testing.T) {
	b := startBackend(t, answering("ok"), 50*time.Millisecond)
	_, url := serving(t, b)
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if code, body, _ := do(t, method, url+"/", nil); code != 200 || body != "ok" {
			t.Fatalf("%s: %d %q", method, code, body)
		}
		b.waitClosed(t) // its idle timeout
	}
	if n := b.connections(); n != 3 {
		t.Fatalf("%d connections, want one per request (each closed while idle)", n)
	}
}

func TestTransportConnectionClose(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	}), 0)
	_, url := serving(t, b)
	for range 3 {
		if code, body, _ := do(t, http.MethodGet, url+"/", nil); code != 200 || body != "bye" {
			t.Fatalf("%d %q", code, body)
		}
	}
	if n := b.connections(); n != 3 {
		t.Fatalf("an instance that answers Connection: close got %d connections for 3 requests, want 3", n)
	}
}

func TestTransportTrailersAndEarlyHints(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "part two")
		w.Header().Set("X-Sum", "42")
	}), 0)
	_, url := serving(t, b)
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != "part one, part two" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("body %q, trailer %v", body, resp.Trailer)
	}
	if len(hints) != 1 || hints[0] != "</app.css>; rel=preload" {
		t.Fatalf("early hints seen by the client: %q", hints)
	}
}

// A client that goes away after an early hint, while the instance works
// on its final answer, ends the request there too.
func TestTransportClientGoesAwayAfterEarlyHints(t *testing.T) {
	ended := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hinted" {
			return // the health checks
		}
		defer close(ended)
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}), 0)
	_, url := serving(t, b)
	conn := dial(t, strings.TrimPrefix(url, "http://"))
	if _, err := io.WriteString(conn, "GET /hinted HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 103 ") {
		t.Fatalf("the early hint: %q %v", line, err)
	}
	_ = conn.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance's request still runs 5s after its client went away")
	}
}

// A client that goes away mid-stream closes the proxy's connection to the
// instance too, and its request ends there.
func TestTransportClientGoesAway(t *testing.T) {
	ended := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(ended)
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}), 0)
	_, url := serving(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "data:" {
		t.Fatalf("stream: %q %v", buf, err)
	}
	cancel()
	_ = resp.Body.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance's request still runs 5s after its client went away")
	}
	b.waitClosed(t)
}

func TestTransportHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-release
	}), 0)
	defer close(release)
	tr := newTransport()
	tr.headerTimeout = 100 * time.Millisecond
	r := &request{addr: b.addr, wire: []byte("GET / HTTP/1.1\r\nHost: app\r\n\r\n"), replayable: true}
	start := time.Now()
	a, err := tr.send(r, hooks{})
	if err == nil {
		a.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("gave up after %s", took)
	}
}

// Draining an instance closes the proxy's idle connections to it.
func TestTransportDrainClosesIdleConnections(t *testing.T) {
	old, next := startBackend(t, answering("old"), 0), startBackend(t, answering("new"), 0)
	s, url := serving(t, old)
	if _, body, _ := do(t, http.MethodGet, url+"/", nil); body != "old" {
		t.Fatalf("body %q", body)
	}
	if _, err := s.Switch("web", next.addr, "r2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Drain("web", old.addr, time.Second); err != nil {
		t.Fatal(err)
	}
	old.waitClosed(t)
	if _, body, _ := do(t, http.MethodGet, url+"/", nil); body != "new" {
		t.Fatalf("body %q", body)
	}
}

// Requests with a body and upgrades go through http.Transport; a body
// comes back whole.
func TestTransportBodies(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		_, _ = io.Copy(w, r.Body) // answers while it reads
	}), 0)
	_, url := serving(t, b)
	payload := strings.Repeat("slipway ", 100_000)
	resp, err := http.Post(url+"/", "text/plain", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != payload {
		t.Fatalf("%d, %d bytes back of %d", resp.StatusCode, len(body), len(payload))
	}
}

// A backend that is down fails every request with a 502, and the log gets
// one line a second for it, which says how many it held back.
func TestFailedRequestsAreLoggedOnceASecond(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	log, logged := capturedLog()
	b := newBackend(addr, "r1", newTransport(), log)
	for range 50 {
		rec := httptest.NewRecorder()
		b.rp.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://example.test/x", nil))
		if rec.Code != http.StatusBadGateway {
			t.Fatalf("status %d; want 502", rec.Code)
		}
	}
	if lines := strings.Count(logged(), "backend request failed"); lines != 1 {
		t.Fatalf("%d log lines for 50 failed requests; want 1:\n%s", lines, logged())
	}

	var l logEvery
	t0 := time.Now()
	for i, c := range []struct {
		at   time.Duration
		n    int
		pass bool
	}{{0, 0, true}, {10 * time.Millisecond, 0, false}, {900 * time.Millisecond, 0, false}, {time.Second, 2, true}, {1500 * time.Millisecond, 0, false}, {3 * time.Second, 1, true}} {
		if n, ok := l.allow(t0.Add(c.at)); n != c.n || ok != c.pass {
			t.Fatalf("call %d at +%s: allow = %d, %v; want %d, %v", i, c.at, n, ok, c.n, c.pass)
		}
	}
}

// capturedLog is a logger whose lines logged returns, safe to use from
// many goroutines.
func capturedLog() (log *slog.Logger, logged func() string) {
	var out strings.Builder
	var mu sync.Mutex
	log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}), nil))
	return log, func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// rawInstance is an instance on loopback that serves each connection with
// serve, which closes it.
func rawInstance(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}
