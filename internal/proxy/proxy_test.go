package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// instance is a real HTTP server on loopback standing for one release's
// instance: it answers its name, streams events, and echoes upgraded
// connections.
type instance struct {
	name string
	addr string
	srv  *http.Server
	sick atomic.Bool
}

func startInstance(t *testing.T, name string) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{name: name, addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		if in.sick.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, name)
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s proto=%s host=%s xfh=%s id=%s", r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"),
			r.Host, r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Request-Id"))
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %s %d\n\n", name, i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		// Echo each line, prefixed with the instance's name.
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = rw.WriteString(name + ":" + line)
			_ = rw.Flush()
		}
	})
	in.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = in.srv.Serve(ln) }()
	t.Cleanup(func() { _ = in.srv.Close() })
	return in
}

// newProxy starts a proxy with one route, web, on a free port.
func newProxy(t *testing.T) (*Server, string) {
	t.Helper()
	return newProxyLogging(t, nil)
}

// newProxyLogging is newProxy with the proxy's log going to log.
func newProxyLogging(t *testing.T, log *slog.Logger) (*Server, string) {
	t.Helper()
	s := &Server{StatePath: filepath.Join(t.TempDir(), "proxy.json"), HealthEvery: 50 * time.Millisecond, Log: log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	go func() { _ = s.Serve(ctx, sock, time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	_ = ln.Close()
	c := NewClient(sock)
	waitUntil(t, "control socket", func() bool { return c.Ping(context.Background()) == nil })
	if err := c.Ensure(context.Background(), "web", listen, "/health"); err != nil {
		t.Fatal(err)
	}
	return s, listen
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	code, body, err := fetch(url)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// fetch is get for goroutines, which must not call t.Fatal.
func fetch(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// switchTo switches web to in and drains the instance before it.
func switchTo(t *testing.T, s *Server, in *instance, release string, drain time.Duration) int64 {
	t.Helper()
	res, err := s.Switch("web", in.addr, release)
	if err != nil {
		t.Fatal(err)
	}
	if res.Previous == "" {
		return 0
	}
	left, err := s.Drain("web", res.Previous, drain)
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// TestSwitchUnderLoad switches between two instances 20 times while
// clients keep sending requests: not one fails, and each answer comes from
// one of the two.
func TestSwitchUnderLoad(t *testing.T) {
	s, listen := newProxy(t)
	a, b := startInstance(t, "v1"), startInstance(t, "v2")
	switchTo(t, s, a, "r1", time.Second)
	var ok, failed atomic.Int64
	var bad sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + listen + "/version")
				if err != nil {
					failed.Add(1)
					bad.Store(err.Error(), true)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 || (string(body) != "v1" && string(body) != "v2") {
					failed.Add(1)
					bad.Store(fmt.Sprintf("%d %q", resp.StatusCode, body), true)
					continue
				}
				ok.Add(1)
			}
		})
	}
	for i := range 20 {
		next := b
		if i%2 == 1 {
			next = a
		}
		if left := switchTo(t, s, next, next.name, 2*time.Second); left != 0 {
			t.Errorf("switch %d: %d requests left on the old instance", i, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	bad.Range(func(k, _ any) bool { t.Logf("failure: %v", k); return true })
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Fatalf("%d ok, %d failed", ok.Load(), failed.Load())
	}
	t.Logf("%d requests, none failed, over 20 switches", ok.Load())
}

// TestDrain: a request in flight on the old instance finishes, and the
// drain waits for it; then the old instance is forgotten.
func TestDrain(t *testing.T) {
	s, listen := newProxy(t)
	a, b := startInstance(t, "v1"), startInstance(t, "v2")
	switchTo(t, s, a, "r1", time.Second)
	got := make(chan string, 1)
	go func() {
		_, body, err := fetch("http://" + listen + "/slow")
		if err != nil {
			body = err.Error()
		}
		got <- body
	}()
	waitUntil(t, "request in flight", func() bool { return s.Routes()[0].InFlight == 1 })
	res, err := s.Switch("web", b.addr, "r2")
	if err != nil {
		t.Fatal(err)
	}
	if res.Previous != a.addr || res.PreviousRelease != "r1" {
		t.Fatalf("switch: %+v", res)
	}
	if r := s.Routes()[0]; r.Previous != a.addr || r.PreviousRelease != "r1" {
		t.Fatalf("route after the switch: %+v; want the old instance held as previous", r)
	}
	start := time.Now()
	left, err := s.Drain("web", a.addr, 5*time.Second)
	if err != nil || left != 0 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("drain: %d left, %v, after %s; want it to wait for the request", left, err, time.Since(start))
	}
	if body := <-got; body != "v1" {
		t.Fatalf("the in-flight request got %q", body)
	}
	if _, body := get(t, "http://"+listen+"/version"); body != "v2" {
		t.Fatalf("after the switch: %q", body)
	}
	if r := s.Routes()[0]; r.Previous != "" {
		t.Fatalf("route after the drain: %+v; want the old instance forgotten", r)
	}
	if _, err := s.Drain("web", b.addr, time.Second); err == nil {
		t.Fatal("drained the instance that serves")
	}
}

// TestSwitchBack: until it is drained, the previous instance is one switch
// away, with its requests; a switch that cannot be persisted changes
// nothing.
func TestSwitchBack(t *testing.T) {
	s, listen := newProxy(t)
	a, b := startInstance(t, "v1"), startInstance(t, "v2")
	switchTo(t, s, a, "r1", time.Second)
	if _, err := s.Switch("web", b.addr, "r2"); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, "http://"+listen+"/version"); body != "v2" {
		t.Fatalf("after the switch: %q", body)
	}
	res, err := s.Switch("web", a.addr, "r1")
	if err != nil || res.Previous != b.addr {
		t.Fatalf("switch back: %+v, %v", res, err)
	}
	if _, body := get(t, "http://"+listen+"/version"); body != "v1" {
		t.Fatalf("after the switch back: %q", body)
	}
	if r := s.Routes()[0]; r.Previous != b.addr || r.Release != "r1" {
		t.Fatalf("route: %+v", r)
	}

	// The state file's directory is gone: the switch fails, traffic stays.
	s.StatePath = filepath.Join(t.TempDir(), "gone", "proxy.json")
	if _, err := s.Switch("web", b.addr, "r2"); err == nil {
		t.Fatal("a switch that could not be persisted succeeded")
	}
	if _, body := get(t, "http://"+listen+"/version"); body != "v1" {
		t.Fatalf("after a failed switch: %q, want the instance that served", body)
	}
}

// TestStreamsSurviveTheSwitch: an SSE stream and an upgraded (WebSocket)
// connection opened before a switch go on until the drain timeout.
func TestStreamsSurviveTheSwitch(t *testing.T) {
	s, listen := newProxy(t)
	a, b := startInstance(t, "v1"), startInstance(t, "v2")
	switchTo(t, s, a, "r1", time.Second)

	resp, err := http.Get("http://" + listen + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	events := bufio.NewReader(resp.Body)

	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	ws := bufio.NewReader(conn)
	status, _ := ws.ReadString('\n')
	if !strings.Contains(status, "101") {
		t.Fatalf("upgrade: %q", status)
	}
	for line, _ := ws.ReadString('\n'); line != "\r\n"; line, _ = ws.ReadString('\n') {
	}

	if left := switchTo(t, s, b, "r2", 700*time.Millisecond); left != 2 {
		t.Fatalf("left on the old instance at the drain timeout: %d, want the 2 streams", left)
	}
	// Both still work after the switch (until the old instance is stopped).
	for range 3 {
		line, err := events.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "data: v1") {
			if line == "\n" {
				continue
			}
			t.Fatalf("event after the switch: %q %v", line, err)
		}
	}
	fmt.Fprintf(conn, "hello\n")
	if line, err := ws.ReadString('\n'); err != nil || line != "v1:hello\n" {
		t.Fatalf("websocket after the switch: %q %v", line, err)
	}
	// New requests go to the new instance.
	if _, body := get(t, "http://"+listen+"/version"); body != "v2" {
		t.Fatalf("after the switch: %q", body)
	}
}

func TestHeadersLimitsAndPause(t *testing.T) {
	s, listen := newProxy(t)
	a := startInstance(t, "v1")
	switchTo(t, s, a, "r1", time.Second)
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/headers", nil)
	req.Host = "app.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{"xff=127.0.0.1", "proto=http", "host=app.example.com", "xfh=app.example.com", "id="} {
		if !strings.Contains(string(body), want) {
			t.Errorf("backend saw %q, lacks %q", body, want)
		}
	}
	if strings.Contains(string(body), "id= ") || strings.HasSuffix(string(body), "id=") {
		t.Errorf("no request id: %q", body)
	}
	// A body over the limit is refused before the backend sees it.
	resp, err = http.Post("http://"+listen+"/version", "application/octet-stream", strings.NewReader(strings.Repeat("x", MaxBody+1)))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("large body: %d", resp.StatusCode)
	}
	// Paused: a request waits, then goes through on resume.
	if err := s.Pause("web", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		_, body, err := fetch("http://" + listen + "/version")
		if err != nil {
			body = err.Error()
		}
		got <- body
	}()
	waitUntil(t, "the request held at the pause", func() bool { return s.Routes()[0].Held == 1 })
	select {
	case body := <-got:
		t.Fatalf("a request went through while paused: %q", body)
	default:
	}
	if err := s.Resume("web"); err != nil {
		t.Fatal(err)
	}
	if body := <-got; body != "v1" {
		t.Fatalf("the held request after the resume: %q", body)
	}
	if r := s.Routes()[0]; r.Held != 0 || r.Paused {
		t.Fatalf("after the resume: %+v", r)
	}
}

// A request held by a pause whose client goes away is dropped: the
// instance never sees it once the pause ends. On the fast path (HTTP/1.1)
// and on net/http's (HTTP/1.0) alike.
func TestPausedClientGoesAway(t *testing.T) {
	var hits atomic.Int64
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/count" {
			hits.Add(1)
		}
		fmt.Fprintf(w, "%d", hits.Load())
	}), 0)
	s, base := serving(t, b)
	listen := strings.TrimPrefix(base, "http://")
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		if err := s.Pause("web", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		conn := dial(t, listen)
		if _, err := io.WriteString(conn, "GET /count "+proto+"\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, proto+" request held", func() bool { return s.Routes()[0].Held == 1 })
		_ = conn.Close()
		waitUntil(t, proto+" request let go", func() bool { return s.Routes()[0].Held == 0 })
		if err := s.Resume("web"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // a request sent on would have come by now
		if _, body := get(t, base+"/peek"); body != "0" {
			t.Fatalf("%s: the instance served %s requests of a client that went away", proto, body)
		}
	}
}

// The requests held by a pause get 503 at once when their route shuts
// down: on the fast path (HTTP/1.1), on net/http's (HTTP/1.0), and
// uploads whose client has sent only a part of the body and waits.
func TestPausedAtShutdown(t *testing.T) {
	s, listen := servingV1(t)
	if err := s.Pause("web", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	requests := map[string]string{
		"fast":    "GET /version HTTP/1.1\r\nHost: app\r\n\r\n",
		"1.0":     "GET /version HTTP/1.0\r\nHost: app\r\n\r\n",
		"chunked": "POST /version HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n" + strings.Repeat("x", 16<<10),
		"length":  "POST /version HTTP/1.1\r\nHost: app\r\nContent-Length: 200000\r\n\r\n" + strings.Repeat("x", 16<<10),
	}
	got := make(chan string, len(requests))
	for name, raw := range requests {
		conn := dial(t, listen)
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				got <- name + ": " + err.Error()
				return
			}
			_ = resp.Body.Close()
			got <- fmt.Sprintf("%s: %d", name, resp.StatusCode)
		}()
	}
	waitUntil(t, "the requests held", func() bool { return s.Routes()[0].Held == int64(len(requests)) })
	start := time.Now()
	if err := s.Remove("web"); err != nil {
		t.Fatal(err)
	}
	var answers []string
	for range requests {
		answers = append(answers, <-got)
	}
	sort.Strings(answers)
	if fmt.Sprint(answers) != "[1.0: 503 chunked: 503 fast: 503 length: 503]" || time.Since(start) > 2*time.Second {
		t.Fatalf("the held requests at shutdown, after %s: %q; want 503 to all at once", time.Since(start).Round(time.Millisecond), answers)
	}
}

func TestHealthChecksAfterTheSwitch(t *testing.T) {
	s, _ := newProxy(t)
	a := startInstance(t, "v1")
	switchTo(t, s, a, "r1", time.Second)
	a.sick.Store(true)
	waitUntil(t, "unhealthy reported", func() bool { r := s.Routes()[0]; return !r.Healthy && strings.Contains(r.Problem, "500") })
	a.sick.Store(false)
	waitUntil(t, "healthy again", func() bool { return s.Routes()[0].Healthy })

}

// TestRestore: a proxy started again on the state file serves the same
// routes, to the same instance.
func TestRestore(t *testing.T) {
	a := startInstance(t, "v1")
	dir := t.TempDir()
	first := &Server{StatePath: filepath.Join(dir, "proxy.json")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = first.Serve(ctx, filepath.Join(dir, "sock"), time.Second); close(done) }()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	_ = ln.Close()
	if err := first.Ensure("web", listen, "/health"); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Switch("web", a.addr, "r1"); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	second := &Server{StatePath: first.StatePath}
	if err := second.Restore(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { _ = second.Serve(ctx2, filepath.Join(dir, "sock"), time.Second); close(done2) }()
	defer func() { cancel2(); <-done2 }()
	if r := second.Routes(); len(r) != 1 || r[0].Backend != a.addr || r[0].Release != "r1" {
		t.Fatalf("restored routes: %+v", r)
	}
	if _, body := get(t, "http://"+listen+"/version"); body != "v1" {
		t.Fatalf("after restore: %q", body)
	}
}

// A request asks to switch protocols when its Connection header lists
// upgrade, in any case and among other names.
func TestUpgrading(t *testing.T) {
	for value, want := range map[string]bool{"Upgrade": true, "keep-alive, upgrade": true, "close": false, "": false, "upgrades": false} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if value != "" {
			r.Header.Set("Connection", value)
		}
		if got := upgrading(r); got != want {
			t.Errorf("Connection: %q: upgrading = %v, want %v", value, got, want)
		}
	}
}
