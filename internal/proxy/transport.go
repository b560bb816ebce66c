package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// transport sends the proxied requests to their instances. A request with
// no body and no upgrade, most of an API's traffic, is exchanged over a
// kept-alive HTTP/1.1 connection on the handler's own goroutine: net/http's
// Request.Write and ReadResponse do the wire format. http.Transport does the
// same work with a reader and a writer goroutine per connection and four
// hand-offs between them per request, which on a small machine cost the
// proxy about as much CPU as the exchange itself. Requests with a body
// (written while the answer is read, for an instance that answers early)
// and upgrades (WebSockets) go through http.Transport, as before.
type transport struct {
	std    *http.Transport
	dialer net.Dialer

	// headerTimeout bounds the wait for an answer's header, idleTimeout
	// how long an idle connection is kept.
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxIdle       int // idle connections kept per instance

	mu   sync.Mutex
	idle map[string][]*backendConn // per host:port, most recently used last
}

func newTransport() *transport {
	t := &transport{
		dialer:        net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		headerTimeout: 5 * time.Minute,
		idleTimeout:   60 * time.Second,
		maxIdle:       256,
		idle:          map[string][]*backendConn{},
	}
	t.std = &http.Transport{
		Proxy:                 nil,
		DialContext:           t.dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   t.maxIdle,
		IdleConnTimeout:       t.idleTimeout,
		ResponseHeaderTimeout: t.headerTimeout,
		ExpectContinueTimeout: time.Second,
		// Pass bodies through as they are: without this the transport
		// asks for gzip on the client's behalf and unpacks the answer.
		DisableCompression: true,
	}
	return t
}

// backendConn is one kept-alive connection to an instance.
type backendConn struct {
	addr  string
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // idle since
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.Body != nil && req.Body != http.NoBody) || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return t.std.RoundTrip(req)
	}
	var h hooks
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil {
		h.got1xx = trace.Got1xxResponse
	}
	return t.send(req, h)
}

// hooks are what the caller of send hears of an exchange.
type hooks struct {
	// got1xx, when not nil, hears of each 1xx answer before the final one.
	got1xx func(int, textproto.MIMEHeader) error
	// waiting, when not nil, is called once the instance has been silent
	// for waitingAfter: it starts a watch of the client, which calls abort
	// if the client goes away, and returns the func that ends the watch.
	waiting func(abort func()) (unwatch func())
}

// waitingAfter is how long an instance may be silent before hooks.waiting
// is called.
const waitingAfter = time.Second

// errClientGone is an exchange cut short because its client went away.
var errClientGone = errors.New("the client went away")

// send exchanges req on a kept-alive connection, on the caller's
// goroutine. Its body, if any, is small and in memory (req.GetBody gives
// it again for a retry): it is written whole before the answer is read.
func (t *transport) send(req *http.Request, h hooks) (*http.Response, error) {
	for {
		bc, reused, err := t.conn(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(bc, req, h)
		if err == nil {
			return resp, nil
		}
		_ = bc.conn.Close()
		// An instance may close a kept-alive connection just as it is
		// reused: the request did not reach it, and one that may be
		// repeated is sent again on a new connection, as http.Transport
		// does.
		var ne *noAnswer
		if !reused || !errors.As(err, &ne) || !replayable(req) || req.Context().Err() != nil || errors.Is(err, errClientGone) {
			return nil, err
		}
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// noAnswer is an error before any byte of an answer came back.
type noAnswer struct{ err error }

func (e *noAnswer) Error() string { return e.err.Error() }
func (e *noAnswer) Unwrap() error { return e.err }

func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// exchange writes req on bc and reads the answer's header. The answer's
// body, when read to its end and closed, gives bc back to the pool.
func (t *transport) exchange(bc *backendConn, req *http.Request, h hooks) (*http.Response, error) {
	// The header's deadline first: a request whose client goes away
	// moves it to the past, and unblocks at once.
	deadline := time.Now().Add(t.headerTimeout)
	first := deadline
	if h.waiting != nil {
		first = time.Now().Add(min(waitingAfter, t.headerTimeout))
	}
	_ = bc.conn.SetReadDeadline(first)
	stop := context.AfterFunc(req.Context(), func() { _ = bc.conn.SetDeadline(time.Unix(1, 0)) })
	var gone atomic.Bool
	unwatch := func() {}
	fail := func(err error) (*http.Response, error) {
		unwatch()
		stop()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if gone.Load() {
			return nil, &noAnswer{errClientGone}
		}
		return nil, err
	}
	if err := req.Write(bc.bw); err != nil {
		return fail(&noAnswer{err})
	}
	if err := bc.bw.Flush(); err != nil {
		return fail(&noAnswer{err})
	}
	var resp *http.Response
	for {
		if _, err := bc.br.Peek(1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && first.Before(deadline) && !gone.Load() {
				// Silent for waitingAfter: watch the client from now on,
				// the deadline at its full length first.
				first = deadline
				_ = bc.conn.SetReadDeadline(deadline)
				unwatch = h.waiting(func() {
					gone.Store(true)
					_ = bc.conn.SetReadDeadline(time.Unix(1, 0))
				})
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("no answer within %s", t.headerTimeout)
			}
			return fail(&noAnswer{err})
		}
		unwatch()
		unwatch = func() {}
		if first.Before(deadline) {
			// The answer has begun: the rest of its header gets the full
			// deadline.
			first = deadline
			_ = bc.conn.SetReadDeadline(deadline)
		}
		var err error
		resp, err = http.ReadResponse(bc.br, req)
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 {
			break
		}
		// 1xx informational answers (103 Early Hints) go to the client
		// through got1xx; the final answer follows.
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("101 Switching Protocols to a request without Upgrade"))
		}
		if h.got1xx != nil {
			if err := h.got1xx(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if gone.Load() {
		_ = resp.Body.Close()
		return fail(nil) // the client went away as the answer came
	}
	// The body may take as long as it takes (a stream). A client that went
	// away before the deadline was cleared is seen here.
	_ = bc.conn.SetReadDeadline(time.Time{})
	if req.Context().Err() != nil {
		_ = resp.Body.Close()
		return fail(req.Context().Err())
	}
	body := &pooledBody{t: t, bc: bc, ctx: req.Context(), body: resp.Body, stop: stop, keep: !resp.Close}
	if resp.Body == http.NoBody || resp.ContentLength == 0 {
		body.eof = true
	}
	resp.Body = body
	return resp, nil
}

// pooledBody is an answer's body; it returns its connection to the pool
// once read to the end.
type pooledBody struct {
	t      *transport
	bc     *backendConn
	ctx    context.Context
	body   io.ReadCloser
	stop   func() bool
	eof    bool // read to the end
	keep   bool // the connection may carry another request
	done   bool
	spoilt atomic.Bool // cut short: the connection is not kept
}

// spoil cuts the answer short from another goroutine: its reads fail, and
// its connection is closed, not kept.
func (b *pooledBody) spoil() {
	b.spoilt.Store(true)
	_ = b.bc.conn.SetDeadline(time.Unix(1, 0))
}

func (b *pooledBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.ctx.Err() != nil:
		err = b.ctx.Err() // the client went away: not the instance's fault
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.body.Close()
	// stop reports false once the client went away: the deadline it set
	// has spoilt the connection.
	if b.stop() && b.eof && b.keep && err == nil && !b.spoilt.Load() {
		b.t.put(b.bc)
		return nil
	}
	_ = b.bc.conn.Close()
	return nil
}

// conn returns an idle connection to addr that is still open, or a new one.
func (t *transport) conn(ctx context.Context, addr string) (*backendConn, bool, error) {
	for {
		t.mu.Lock()
		list := t.idle[addr]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		bc := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[addr] = list[:len(list)-1]
		t.mu.Unlock()
		if time.Since(bc.since) < t.idleTimeout && open(bc) {
			return bc, true, nil
		}
		_ = bc.conn.Close()
	}
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &backendConn{addr: addr, conn: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c)}, false, nil
}

// open reports whether an idle connection is still open: the instance has
// neither closed it nor sent anything on it. It peeks without waiting (a
// read deadline in the past would fail before looking).
func open(bc *backendConn) bool {
	if bc.br.Buffered() > 0 {
		return false
	}
	sc, ok := bc.conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(rerr, syscall.EAGAIN) // nothing to read, no end of stream
		return true
	})
	return err == nil && alive
}

func (t *transport) put(bc *backendConn) {
	bc.since = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[bc.addr]
	if len(list) >= t.maxIdle {
		_ = bc.conn.Close()
		return
	}
	t.idle[bc.addr] = append(list, bc)
}

// closeIdle closes the idle connections to addr: its instance is about to
// stop.
func (t *transport) closeIdle(addr string) {
	t.mu.Lock()
	list := t.idle[addr]
	delete(t.idle, addr)
	t.mu.Unlock()
	for _, bc := range list {
		_ = bc.conn.Close()
	}
	t.std.CloseIdleConnections()
}

// sweep closes the connections idle for longer than idleTimeout, those of
// instances that stopped among them.
func (t *transport) sweep() {
	var old []*backendConn
	t.mu.Lock()
	for addr, list := range t.idle {
		// Most recently used last: the stale ones are a prefix.
		n := 0
		for n < len(list) && time.Since(list[n].since) >= t.idleTimeout {
			n++
		}
		old = append(old, list[:n]...)
		if n == len(list) {
			delete(t.idle, addr)
		} else if n > 0 {
			t.idle[addr] = append(list[:0:0], list[n:]...)
		}
	}
	t.mu.Unlock()
	for _, bc := range old {
		_ = bc.conn.Close()
	}
}
