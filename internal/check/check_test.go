package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// app is a small HTTP app on loopback that records what it was sent.
type app struct {
	*httptest.Server
	mu   sync.Mutex
	last *http.Request
}

func newApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"ok","db":"up"}`)
	})
	mux.HandleFunc("/board/tasks", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"tasks":[]}`)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Traceback: KeyError 'DATABASE_URL'", http.StatusInternalServerError)
	})
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/health", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://192.0.2.1/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Repeat("x", 5000)+"needle")
	})
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.last = r.Clone(context.Background())
		a.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *app) lastRequest() *http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func TestDo(t *testing.T) {
	a := newApp(t)
	tests := []struct {
		name    string
		req     Request
		wantErr []string // substrings of the error; nil: success
	}{
		{name: "200 by default", req: Request{URL: a.URL + "/health"}},
		{name: "body substring", req: Request{URL: a.URL + "/health", ExpectBody: `"db":"up"`}},
		{name: "body missing", req: Request{URL: a.URL + "/health", ExpectBody: `"db":"down"`},
			wantErr: []string{"GET " + a.URL + "/health", `body does not contain "\"db\":\"down\""`, `{"status":"ok"`}},
		{name: "expected 401", req: Request{URL: a.URL + "/board/tasks", ExpectStatus: 401}},
		{name: "unexpected 401", req: Request{URL: a.URL + "/board/tasks"},
			wantErr: []string{"got status 401, want 200", "unauthorized"}},
		{name: "500 shows the body", req: Request{URL: a.URL + "/broken"},
			wantErr: []string{"got status 500, want 200", "KeyError 'DATABASE_URL'"}},
		{name: "404", req: Request{URL: a.URL + "/nope"}, wantErr: []string{"got status 404"}},
		{name: "method", req: Request{Method: http.MethodPost, URL: a.URL + "/health"}},
		{name: "headers sent", req: Request{URL: a.URL + "/board/tasks", Headers: map[string]string{"Authorization": "Bearer s3cret"}, ExpectBody: `"tasks"`}},
		{name: "redirect is not followed", req: Request{URL: a.URL + "/old"},
			wantErr: []string{"got status 302, want 200"}},
		{name: "redirect expected", req: Request{URL: a.URL + "/old", ExpectStatus: http.StatusFound}},
		{name: "redirect elsewhere is not followed", req: Request{URL: a.URL + "/elsewhere", ExpectStatus: http.StatusMovedPermanently}},
		{name: "body past the snippet", req: Request{URL: a.URL + "/big", ExpectBody: "needle"}},
		{name: "bad URL", req: Request{URL: "http://[::1"}, wantErr: []string{"GET http://[::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Do(t.Context(), tt.req)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Do = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Do succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDoSendsRequest(t *testing.T) {
	a := newApp(t)
	err := Do(t.Context(), Request{
		Method:  http.MethodHead,
		URL:     a.URL + "/health?probe=1",
		Headers: map[string]string{"Authorization": "Bearer x", "X-Slipway-Check": "smoke", "User-Agent": "slipway-check"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := a.lastRequest()
	if r.Method != http.MethodHead || r.URL.Path != "/health" || r.URL.RawQuery != "probe=1" {
		t.Errorf("server got %s %s", r.Method, r.URL)
	}
	for k, v := range map[string]string{"Authorization": "Bearer x", "X-Slipway-Check": "smoke", "User-Agent": "slipway-check"} {
		if got := r.Header.Get(k); got != v {
			t.Errorf("header %s = %q; want %q", k, got, v)
		}
	}
}

// Apps behind name-based checks (Rails host authorization, Django
// ALLOWED_HOSTS, a vhost) need the Host header a smoke check sets.
func TestDoSendsHostHeader(t *testing.T) {
	a := newApp(t)
	if err := Do(t.Context(), Request{URL: a.URL + "/health", Headers: map[string]string{"Host": "app.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if got := a.lastRequest().Host; got != "app.example.com" {
		t.Errorf("server saw Host %q; want app.example.com", got)
	}
}

func TestDoTimeout(t *testing.T) {
	a := newApp(t)
	start := time.Now()
	err := Do(t.Context(), Request{URL: a.URL + "/slow", Timeout: 200 * time.Millisecond})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v; want a deadline error", err)
	}
	if !strings.Contains(err.Error(), "GET "+a.URL+"/slow") {
		t.Errorf("error %q does not name the request", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Do returned after %s; want about 200ms", d)
	}
}

func TestDoRefused(t *testing.T) {
	url := closedURL(t)
	err := Do(t.Context(), Request{URL: url + "/health", Timeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Do = %v; want connection refused", err)
	}
	if strings.Contains(err.Error(), `Get "`) {
		t.Errorf("error %q repeats the URL error's own prefix", err)
	}
}

// closedURL is the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// flaky answers 503 to its first n requests, then 200.
func flaky(t *testing.T, n int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= n {
			http.Error(w, "starting up", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestWaitHealthy(t *testing.T) {
	srv, calls := flaky(t, 3)
	start := time.Now()
	err := WaitHealthy(t.Context(), Request{URL: srv.URL, ExpectBody: "ok"}, 5*time.Second, 50*time.Millisecond, func() error { return nil })
	if err != nil {
		t.Fatalf("WaitHealthy = %v", err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d requests; want 3 failures then 1 success", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
}

// A service that takes a moment to bind its port: refused, then 503s, then up.
func TestWaitHealthyServerStartsLate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	var calls atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	t.Cleanup(func() { _ = srv.Close() })
	started := make(chan error, 1)
	time.AfterFunc(300*time.Millisecond, func() {
		ln, err := net.Listen("tcp", addr)
		started <- err
		if err == nil {
			go func() { _ = srv.Serve(ln) }()
		}
	})

	err = WaitHealthy(t.Context(), Request{URL: "http://" + addr + "/health"}, 5*time.Second, 50*time.Millisecond, nil)
	if lerr := <-started; lerr != nil {
		t.Skipf("could not rebind %s: %v", addr, lerr)
	}
	if err != nil {
		t.Fatalf("WaitHealthy = %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d requests reached the server; want 3", n)
	}
}

func TestWaitHealthyTimesOut(t *testing.T) {
	srv, calls := flaky(t, 1<<30)
	start := time.Now()
	// 503 says "not yet": fail_after does not count it.
	err := WaitHealthy(t.Context(), Request{URL: srv.URL + "/health", FailAfter: 2}, 500*time.Millisecond, 50*time.Millisecond, nil)
	took := time.Since(start)
	if err == nil {
		t.Fatal("WaitHealthy succeeded against a server that always answers 503")
	}
	for _, want := range []string{"not healthy after 500ms", "got status 503, want 200", "starting up"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if took < 500*time.Millisecond || took > 2*time.Second {
		t.Errorf("returned after %s; want about 500ms", took)
	}
	if n := calls.Load(); n < 3 {
		t.Errorf("only %d polls in 500ms at a 50ms interval", n)
	}
}

func TestWaitHealthyDeadService(t *testing.T) {
	srv, calls := flaky(t, 1<<30)
	exited := errors.New("service exited with code 1")
	var asked atomic.Int64
	alive := func() error {
		if asked.Add(1) >= 2 {
			return exited
		}
		return nil
	}
	start := time.Now()
	err := WaitHealthy(t.Context(), Request{URL: srv.URL}, 10*time.Second, 50*time.Millisecond, alive)
	if !errors.Is(err, exited) {
		t.Fatalf("WaitHealthy = %v; want the service's exit", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("kept waiting %s for a dead service", d)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d polls; want 2 (stopped once alive failed)", n)
	}
}

func TestWaitHealthyCanceled(t *testing.T) {
	srv, _ := flaky(t, 1<<30)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	err := WaitHealthy(ctx, Request{URL: srv.URL}, 10*time.Second, 50*time.Millisecond, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitHealthy = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned %s after cancel", d)
	}
}

// A hung health endpoint must not hold a poll past the overall timeout.
func TestWaitHealthyHungEndpoint(t *testing.T) {
	a := newApp(t)
	start := time.Now()
	err := WaitHealthy(t.Context(), Request{URL: a.URL + "/slow", Timeout: time.Minute}, 700*time.Millisecond, 100*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "not healthy after 700ms") {
		t.Fatalf("WaitHealthy = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("returned after %s; want about 700ms", d)
	}
}

// Definitive refusals in a row end the wait at once: FailAfter of them.
// A "not yet" (503) between them starts the count again.
func TestWaitHealthyFailAfter(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.URL.Path == "/mixed" && n%3 == 0 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "KeyError: 'DATABASE_URL'", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	err := WaitHealthy(t.Context(), Request{URL: srv.URL + "/health", FailAfter: 3}, 10*time.Second, 50*time.Millisecond, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Got != 500 || !strings.Contains(err.Error(), "refused 3 times in a row") || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("WaitHealthy = %v; want 3 refusals", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d polls; want 3", n)
	}
	calls.Store(0)
	// 500, 500, 503, 500, 500, 503 ...: never 3 in a row; the timeout ends it.
	err = WaitHealthy(t.Context(), Request{URL: srv.URL + "/mixed", FailAfter: 3}, 300*time.Millisecond, 50*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "not healthy after 300ms") {
		t.Fatalf("WaitHealthy over 500s and 503s = %v; want the timeout", err)
	}
}
