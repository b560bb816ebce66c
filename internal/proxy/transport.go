package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// transport sends the fast path's requests to their instances, over
// kept-alive HTTP/1.1 connections, on the handler's own goroutine. The
// request goes as the wire bytes serveFast built; the answer is read with
// fasthttp's parser into a pooled fasthttp.Response, and its body streams
// from the connection. Against net/http's Request.Write and ReadResponse,
// which allocate a header map, strings and readers per request, that cut
// the proxy's CPU per request by a fifth on this 2-core machine. Requests
// handed off to net/http (larger bodies, upgrades, Expect, HTTP/1.0) go
// through std, an http.Transport.
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
		Proxy:                  nil,
		DialContext:            t.dialer.DialContext,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    t.maxIdle,
		IdleConnTimeout:        t.idleTimeout,
		ResponseHeaderTimeout:  t.headerTimeout,
		MaxResponseHeaderBytes: maxAnswerHeader,
		ExpectContinueTimeout:  time.Second,
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

// The reader of a connection to an instance starts at readBuffer bytes; an
// answer's header must fit in it, and it grows to maxAnswerHeader for one
// that does not (a 502 beyond).
const (
	readBuffer      = 16 << 10
	maxAnswerHeader = 1 << 20
)

// request is a request as send writes it to an instance.
type request struct {
	addr       string // the instance's host:port
	wire       []byte // the request's head and body, as sent
	head       bool   // a HEAD request: its answer has no body
	replayable bool   // it may be sent again on a new connection
}

// hooks are what the caller of send hears of an exchange.
type hooks struct {
	// got1xx, when not nil, hears of each 1xx answer before the final one.
	got1xx func(*fasthttp.ResponseHeader) error
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

// send exchanges r on a kept-alive connection, on the caller's goroutine,
// and returns the answer, whose body is still to read. The caller closes
// it.
func (t *transport) send(r *request, h hooks) (*answer, error) {
	for {
		bc, reused, err := t.conn(r.addr)
		if err != nil {
			return nil, err
		}
		a, err := t.exchange(bc, r, h)
		if err == nil {
			return a, nil
		}
		_ = bc.conn.Close()
		// An instance may close a kept-alive connection just as it is
		// reused: the request did not reach it, and one that may be
		// repeated is sent again on a new connection, as http.Transport
		// does.
		var ne *noAnswer
		if !reused || !errors.As(err, &ne) || !r.replayable || errors.Is(err, errClientGone) {
			return nil, err
		}
	}
}

// noAnswer is an error before any byte of an answer came back.
type noAnswer struct{ err error }

func (e *noAnswer) Error() string { return e.err.Error() }
func (e *noAnswer) Unwrap() error { return e.err }

// replayable reports whether a request may be sent twice: its method is
// safe, or it carries an idempotency key.
func replayable(method []byte, h *fasthttp.RequestHeader) bool {
	switch string(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return len(h.Peek("Idempotency-Key")) > 0 || len(h.Peek("X-Idempotency-Key")) > 0
}

// exchange writes r on bc and reads the answer's header.
func (t *transport) exchange(bc *backendConn, r *request, h hooks) (*answer, error) {
	deadline := time.Now().Add(t.headerTimeout)
	first := deadline
	if h.waiting != nil {
		first = time.Now().Add(min(waitingAfter, t.headerTimeout))
	}
	_ = bc.conn.SetReadDeadline(first)
	var gone atomic.Bool
	unwatch := func() {}
	a := answers.Get().(*answer)
	fail := func(err error) (*answer, error) {
		unwatch()
		a.release()
		if gone.Load() {
			return nil, &noAnswer{errClientGone}
		}
		return nil, err
	}
	if _, err := bc.bw.Write(r.wire); err != nil {
		return fail(&noAnswer{err})
	}
	if err := bc.bw.Flush(); err != nil {
		return fail(&noAnswer{err})
	}
	hdr := &a.resp.Header
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
		hdr.SetNoDefaultContentType(true)
		open, err := readHeader(bc, hdr, r.head)
		a.headOpen = open
		if err != nil {
			if gone.Load() {
				return fail(nil)
			}
			return fail(fmt.Errorf("the answer's header: %w", err))
		}
		code := hdr.StatusCode()
		if code < 100 || code > 199 {
			break
		}
		// 1xx informational answers (103 Early Hints) go to the client
		// through got1xx; the final answer follows.
		if code == http.StatusSwitchingProtocols {
			return fail(errors.New("101 Switching Protocols to a request without Upgrade"))
		}
		if h.got1xx != nil {
			if err := h.got1xx(hdr); err != nil {
				return fail(err)
			}
		}
		if h.waiting != nil {
			// The final answer may be long in coming: the client is
			// watched again once the instance has been silent as long.
			if next := time.Now().Add(waitingAfter); next.Before(deadline) {
				first = next
				_ = bc.conn.SetReadDeadline(first)
			}
		}
	}
	if gone.Load() {
		return fail(nil) // the client went away as the answer came
	}
	// The body may take as long as it takes (a stream).
	_ = bc.conn.SetReadDeadline(time.Time{})
	a.t, a.bc = t, bc
	code := hdr.StatusCode()
	if r.head || code == http.StatusNoContent || code == http.StatusNotModified {
		a.eof = true // no body, whatever its header says
		// fasthttp's parser, which does not know the request was a HEAD,
		// takes an answer with no length for one whose body ends at the
		// close: its header as written says whether it does.
		a.headOpen = a.headOpen && r.head && hdr.ContentLength() == -2
		return a, nil
	}
	a.headOpen = false
	a.resp.StreamBody = true
	if err := a.resp.ReadBody(bc.br, 0); err != nil {
		return fail(err)
	}
	a.body = a.resp.BodyStream()
	return a, nil
}

// readHeader reads an answer's header from bc, its reader made larger for
// a header that does not fit. For the answer to a HEAD it reports whether
// the header, as written, leaves the connection open (see answer.headOpen).
func readHeader(bc *backendConn, hdr *fasthttp.ResponseHeader, head bool) (open bool, err error) {
	// fasthttp's parser waits for the CRLF CRLF that ends a header: one
	// ended by bare line feeds, which never comes, is refused at once.
	raw, _ := bc.br.Peek(bc.br.Buffered())
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	before := func(i int) bool { return i >= 0 && (end < 0 || i < end) }
	if before(bytes.Index(raw, []byte("\n\n"))) || before(bytes.Index(raw, []byte("\n\r\n"))-1) {
		return false, errors.New("a header line ends with a bare line feed")
	}
	if head && end >= 0 {
		open = keepsOpen(raw[:end])
	}
	for {
		err := hdr.Read(bc.br)
		var small *fasthttp.ErrSmallBuffer
		if !errors.As(err, &small) || bc.br.Size() >= maxAnswerHeader {
			return open, err
		}
		bc.br = bufio.NewReaderSize(bc.br, maxAnswerHeader)
	}
}

// keepsOpen reports whether an answer's header leaves its connection open:
// HTTP/1.1, with no Connection: close.
func keepsOpen(head []byte) bool {
	status, fields, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 ")) {
		return false
	}
	for line := range bytes.SplitSeq(fields, []byte("\r\n")) {
		name, value, _ := bytes.Cut(line, []byte(":"))
		if !bytes.EqualFold(bytes.TrimSpace(name), []byte("Connection")) {
			continue
		}
		for tok := range bytes.SplitSeq(value, []byte(",")) {
			if bytes.EqualFold(bytes.TrimSpace(tok), []byte("close")) {
				return false
			}
		}
	}
	return true
}

// answer is an instance's answer to a request of send: its status and
// header in resp, its body read through Read. Closing it gives its
// connection back to the pool, if the body was read to its end.
type answer struct {
	t      *transport
	bc     *backendConn
	resp   fasthttp.Response
	body   io.Reader   // nil when the answer has no body
	eof    bool        // read to the end
	spoilt atomic.Bool // cut short: the connection is not kept
	// headOpen: the answer to a HEAD, with no length, whose connection
	// stays open all the same.
	headOpen bool
}

var answers = sync.Pool{New: func() any { return new(answer) }}

// spoil cuts the answer short from another goroutine: its reads fail, and
// its connection is closed, not kept.
func (a *answer) spoil() {
	a.spoilt.Store(true)
	_ = a.bc.conn.SetDeadline(time.Unix(1, 0))
}

func (a *answer) Read(p []byte) (int, error) {
	if a.eof {
		return 0, io.EOF
	}
	n, err := a.body.Read(p)
	if err == io.EOF {
		a.eof = true
	}
	return n, err
}

// Close ends the answer; a is not used after it.
func (a *answer) Close() {
	// A connection whose reader grew for a large header is not kept with
	// it.
	keep := a.eof && (a.headOpen || !a.resp.Header.ConnectionClose()) && !a.spoilt.Load() && a.bc.br.Size() <= readBuffer
	if a.body != nil {
		// A stream whose read failed leaves its connection at an unknown
		// offset: eof is false then, and the connection is closed.
		_ = a.resp.CloseBodyStream()
	}
	if keep {
		a.t.put(a.bc)
	} else {
		_ = a.bc.conn.Close()
	}
	a.release()
}

func (a *answer) release() {
	a.resp.Reset()
	a.t, a.bc, a.body, a.eof, a.headOpen = nil, nil, nil, false, false
	a.spoilt.Store(false)
	answers.Put(a)
}

// conn returns an idle connection to addr that is still open, or a new one.
func (t *transport) conn(addr string) (*backendConn, bool, error) {
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
	c, err := t.dialer.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &backendConn{addr: addr, conn: c, br: bufio.NewReaderSize(c, readBuffer), bw: bufio.NewWriter(c)}, false, nil
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
