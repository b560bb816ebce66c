package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// MaxBody is the largest request body a route passes on (413 beyond).
const MaxBody = 32 << 20

// backend is one instance behind a route, with its in-flight requests.
type backend struct {
	addr      string // host:port
	release   string // the release it runs, as the deployer named it
	inflight  atomic.Int64
	rp        *httputil.ReverseProxy
	transport *transport
	log       *slog.Logger
	failures  logEvery // the log of its failed requests
}

// logEvery lets one line a second through: a backend that is down fails
// every request, and the log must not take one line for each.
type logEvery struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether a line may be logged at now, and how many were
// held back since the last one.
func (l *logEvery) allow(now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}

func newBackend(addr, release string, transport *transport, log *slog.Logger) *backend {
	target := &url.URL{Scheme: "http", Host: addr}
	b := &backend{addr: addr, release: release, transport: transport, log: log}
	b.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
			// The request's trailer is filled in as its body ends: the
			// copy ReverseProxy made of it before would stay empty.
			pr.Out.Trailer = pr.In.Trailer
		},
		Transport:  transport.std,
		BufferPool: &copyBuffers,
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// FlushInterval 0: ReverseProxy flushes server-sent events and
		// responses of unknown length at once, and writes a response of
		// known length in one go.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return // the client went away
			}
			if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
				// A body of unknown length that went past MaxBody.
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			b.logFailure(r.URL.Path, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return b
}

// copyBuffers lends ReverseProxy the buffers it copies bodies through.
// Without them each request allocates 32 KB, most of the proxy's garbage
// and so most of its GC work.
var copyBuffers bufferPool

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// route is one public listener and the backend it sends traffic to.
type route struct {
	service string
	listen  string
	// health is the path on the backend ("" means no health checks); it
	// changes under both the Server's mu and this route's mu.
	health string
	log    *slog.Logger

	active atomic.Pointer[backend]
	// previous served before the last switch, until drained (guarded by
	// the Server's mu).
	previous *backend
	gate     gate
	// fast serves the listener; srv the connections it hands off (front.go).
	fast     *fasthttp.Server
	srv      *http.Server
	ln       net.Listener
	handoffs atomic.Int64 // hand-offs that srv has not taken yet
	pending  sync.Map     // their connections (net.Conn → struct{})

	mu      sync.Mutex
	healthy bool
	checked time.Time
	problem string // why the last health check failed
}

// shutdown stops accepting and lets the open connections finish, both the
// ones fasthttp serves and the ones it handed to net/http, until ctx ends.
func (rt *route) shutdown(ctx context.Context) {
	rt.gate.stop()    // the requests held by a pause get 503
	_ = rt.ln.Close() // at once, whether or not fasthttp has started on it
	_ = rt.fast.ShutdownWithContext(ctx)
	// A request fasthttp had read may have been handed off as it stopped:
	// net/http must have answered it before it shuts down, for net/http
	// drops a request it reads once Shutdown has begun.
	for rt.handoffs.Load() > 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	_ = rt.srv.Shutdown(ctx)
}

// acquire returns the active backend with one more request in flight. A
// request that raced with a switch retries on the new backend, so after
// a switch the old backend's count only goes down.
func (rt *route) acquire() *backend {
	for {
		b := rt.active.Load()
		if b == nil {
			return nil
		}
		b.inflight.Add(1)
		if rt.active.Load() == b {
			return b
		}
		b.inflight.Add(-1)
	}
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Body == http.NoBody:
	case upgrading(r):
		// An upgrade's body is not read full duplex: net/http deals with
		// what is left of it as it writes the answer's header.
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	default:
		// Whatever answers the request (the instance, or the proxy's own
		// 503 or 413), the body is ended before the handler returns.
		u := newUpload(http.MaxBytesReader(w, r.Body, MaxBody))
		r.Body = u
		defer u.end(w)
		// An instance may answer while it reads (an echo, a stream of
		// results): the body keeps flowing after the answer began.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	if err := rt.gate.wait(r.Context()); err != nil {
		http.Error(w, "paused too long", http.StatusServiceUnavailable)
		return
	}
	if r.ContentLength > MaxBody {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	rt.forward(w, r)
}

// forward sends r to the active instance and its answer to w.
func (rt *route) forward(w http.ResponseWriter, r *http.Request) {
	b := rt.acquire()
	if b == nil {
		http.Error(w, "no instance is serving yet", http.StatusServiceUnavailable)
		return
	}
	defer b.inflight.Add(-1)
	if r.Header.Get("X-Request-Id") == "" {
		r.Header.Set("X-Request-Id", requestID())
	}
	b.rp.ServeHTTP(w, r)
}

// upgrading reports whether r asks to switch protocols, as ReverseProxy
// sees it: an answer to it may take the connection over.
func upgrading(r *http.Request) bool {
	return isListed(connectionTokens(r.Header["Connection"]), []byte("upgrade"))
}

// upload is a handed-off request's body as the transport reads it, on a
// goroutine of its own that outlives the answer when the instance answers
// before it has read the body. Left to net/http, with a handler that reads
// full duplex, what is left of such a body could be taken for the
// connection's next request, and the end of it, read after the handler,
// starts a read of the connection that the next request's read panics on.
// So the handler ends it (end) before it returns.
type upload struct {
	turn  chan struct{} // full while a Read runs
	body  io.ReadCloser
	eof   bool
	ended bool
}

func newUpload(body io.ReadCloser) *upload {
	return &upload{turn: make(chan struct{}, 1), body: body}
}

// errUploadEnded is the transport's read of a body after its answer.
var errUploadEnded = errors.New("the request's answer has ended")

func (u *upload) Read(p []byte) (int, error) {
	u.turn <- struct{}{}
	defer func() { <-u.turn }()
	if u.ended {
		return 0, errUploadEnded
	}
	n, err := u.body.Read(p)
	if err == io.EOF {
		u.eof = true
	}
	return n, err
}

// Close does nothing: net/http closes the body once the handler is done.
func (u *upload) Close() error { return nil }

// maxReadWait is how long end waits for a read that still runs: one that
// returns the body's end does at once, one that waits for more of the
// client's body is cut short.
const maxReadWait = 50 * time.Millisecond

// end, once the instance's answer is in w, fails the transport's reads
// from now on. A body read to its end leaves the connection for the next
// request; any other closes it after the answer, which is not held up
// meanwhile: the end of an answer of unknown length is written once the
// handler returns, and a client may wait for it before it sends more, or
// instead.
func (u *upload) end(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	cut := false
	select {
	case u.turn <- struct{}{}:
	default:
		t := time.NewTimer(maxReadWait)
		select {
		case u.turn <- struct{}{}:
		case <-t.C:
			_ = rc.SetReadDeadline(time.Unix(1, 0))
			cut = true
			u.turn <- struct{}{}
		}
		t.Stop()
	}
	u.ended = true
	eof := u.eof
	<-u.turn
	if eof && !cut {
		return
	}
	// No more is read of the connection: net/http would drop up to 256
	// KiB of the body after the answer, waiting on a client that may have
	// stopped. (Not once the body has ended: net/http reads the
	// connection then, to see the client go, and a deadline would end
	// that read as a client gone.)
	_ = rc.SetReadDeadline(time.Unix(1, 0))
	// A read past a MaxBytesReader's limit is how a handler tells net/http
	// to close the connection after the answer.
	_, _ = http.MaxBytesReader(w, io.NopCloser(strings.NewReader("x")), 0).Read(make([]byte, 1))
}

func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// drain waits until b has no request in flight, up to timeout; it reports
// how many were left.
func drain(b *backend, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for {
		n := b.inflight.Load()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check runs one health check of the active backend.
func (rt *route) check(ctx context.Context, client *http.Client) {
	b := rt.active.Load()
	rt.mu.Lock()
	health := rt.health
	rt.mu.Unlock()
	if b == nil || health == "" {
		return
	}
	err := probe(ctx, client, b.addr, health)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.active.Load() != b {
		return // switched meanwhile
	}
	if err != nil && rt.healthy {
		rt.log.Warn("instance went unhealthy", "service", rt.service, "backend", b.addr, "err", err)
	}
	rt.healthy, rt.checked = err == nil, time.Now()
	rt.problem = ""
	if err != nil {
		rt.problem = err.Error()
	}
}

// probe asks addr for path and wants a 2xx.
func probe(ctx context.Context, client *http.Client, addr, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d", path, resp.StatusCode)
	}
	return nil
}

// gate holds requests while a route is paused.
type gate struct {
	mu      sync.Mutex
	resumed chan struct{} // nil when not paused
	timer   *time.Timer
	held    atomic.Int64  // requests waiting in wait
	stopped chan struct{} // closed as the route shuts down (see done)
}

// maxPauseWait is how long a request waits for a paused route.
const maxPauseWait = 30 * time.Second

// errStopping ends the wait of a request held as its route shuts down.
var errStopping = errors.New("the route is shutting down")

// wait holds a request while the route is paused, until it resumes, ctx
// ends, the route shuts down, or maxPauseWait passes.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.resumed
	var stopped chan struct{}
	if ch != nil {
		stopped = g.done()
	}
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	g.held.Add(1)
	defer g.held.Add(-1)
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stopped:
		return errStopping
	case <-time.After(maxPauseWait):
		return errors.New("paused too long")
	}
}

// done is the channel closed by stop; the caller holds mu.
func (g *gate) done() chan struct{} {
	if g.stopped == nil {
		g.stopped = make(chan struct{})
	}
	return g.stopped
}

// stop ends the waits, those to come too: the route shuts down.
func (g *gate) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.done():
	default:
		close(g.stopped)
	}
}

// pause holds new requests until resume, or until limit passes.
func (g *gate) pause(limit time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resumed == nil {
		g.resumed = make(chan struct{})
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	g.timer = time.AfterFunc(limit, g.resume)
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resumed != nil {
		close(g.resumed)
		g.resumed = nil
	}
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
}

func (g *gate) paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.resumed != nil
}
