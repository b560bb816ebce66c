package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The public side of a route has two servers on one listener.
//
// fasthttp reads every request. Most of an API's traffic (no body or a
// small one, no upgrade) it serves itself, in serveFast: the request is
// sent on with transport.send and the answer written back, with no request
// context, background read or ResponseWriter per request. On this 2-core
// machine that, with the transport's own wire format, took the proxy from
// 0.32-0.36x to 0.41-0.56x of direct's throughput (BenchmarkProxyOverhead),
// where net/http's server side was most of what was left to cut.
//
// Any other request (a body larger than inlineBody or of unknown length,
// Expect, Upgrade, HTTP/1.0, an unusual request target) hands its connection to
// net/http: the request is replayed to rt.srv, whose handler is the
// ReverseProxy path (route.ServeHTTP), and the connection stays with
// net/http until it closes. Full-duplex bodies, WebSockets and 100-continue
// are done there as before.

// inlineBody is the largest request body serveFast sends on itself; it is
// what fasthttp has read ahead with the header.
const inlineBody = 8 << 10

// maxHeader bounds a request's header (431 beyond).
const maxHeader = 32 << 10

// newFront is the fasthttp server of rt's listener.
func (rt *route) newFront() *fasthttp.Server {
	return &fasthttp.Server{
		Handler: rt.serveFast,
		// The body stays unread until the request is classified: a large
		// one goes to net/http as it comes.
		StreamRequestBody:            true,
		MaxRequestBodySize:           math.MaxInt, // MaxBody is the route's, with its 413
		DisablePreParseMultipartForm: true,
		ReadBufferSize:               maxHeader,
		ReadTimeout:                  10 * time.Second, // the request header
		IdleTimeout:                  2 * time.Minute,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		Logger:                       fasthttpLogger{rt.log},
		ConnState: func(c net.Conn, state fasthttp.ConnState) {
			if state == fasthttp.StateClosed {
				rt.handedOff(c) // a hand-off whose hijack did not run
			}
		},
		// fasthttp answers 100 Continue itself, before the handler: a body
		// over MaxBody is refused before it is sent (417).
		ContinueHandler: func(h *fasthttp.RequestHeader) bool { return h.ContentLength() <= MaxBody },
	}
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "from", "fasthttp") // the logger names the component
}

// hopHeaders are the hop-by-hop headers, which are not sent on.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// serveFast serves one request, or hands its connection to net/http.
func (rt *route) serveFast(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	// A body over MaxBody goes to net/http too, for its 413: net/http
	// lingers so that the client reads it before the connection closes.
	n := h.ContentLength()
	if n == -1 && hasRawField(h.RawHeaders(), "Content-Length") {
		// Both framings: the chunks are taken, as RFC 9112 says, and the
		// Content-Length dropped; but a proxy in front may have taken the
		// length, and read what follows as another request. Refused.
		ctx.Error("a request with both Content-Length and Transfer-Encoding\n", http.StatusBadRequest)
		ctx.SetConnectionClose()
		return
	}
	path := ctx.URI().PathOriginal()
	if n > inlineBody || n == -1 || len(h.Peek("Upgrade")) > 0 || len(h.Peek("Expect")) > 0 ||
		!h.IsHTTP11() || h.IsConnect() || len(path) == 0 || path[0] != '/' || bytes.HasPrefix(path, []byte("//")) {
		rt.handOff(ctx)
		return
	}
	if rt.gate.paused() {
		switch err := rt.hold(ctx); {
		case errors.Is(err, errClientGone):
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(net.Conn) {})
			return
		case err != nil:
			ctx.Error("paused too long\n", http.StatusServiceUnavailable)
			return
		}
	}
	b := rt.acquire()
	if b == nil {
		ctx.Error("no instance is serving yet\n", http.StatusServiceUnavailable)
		return
	}
	answer, err := b.forward(ctx, path)
	if err != nil {
		b.inflight.Add(-1)
		switch {
		case errors.Is(err, errClientGone):
			// No answer: the connection is closed as it is.
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(net.Conn) {})
		case errors.Is(err, errBadField):
			ctx.Error("bad request header\n", http.StatusBadRequest)
			ctx.SetConnectionClose()
		default:
			b.logFailure(string(path), err)
			ctx.Response.Reset()
			ctx.SetStatusCode(http.StatusBadGateway)
		}
		return
	}
	// The request is in flight until fasthttp has written the answer and
	// closed its body.
	ctx.SetBodyStream(answer, answer.size)
}

// hold waits while the route is paused, watching the client: a client
// that goes away meanwhile is not sent on when the pause ends
// (errClientGone).
func (rt *route) hold(ctx *fasthttp.RequestCtx) error {
	wait, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gone atomic.Bool
	unwatch := watchClient(ctx.Conn(), func() {
		gone.Store(true)
		cancel()
	})
	err := rt.gate.wait(wait)
	unwatch()
	if gone.Load() {
		return errClientGone
	}
	return err
}

// wires are the buffers requests are built in before they are sent.
var wires = sync.Pool{New: func() any { b := make([]byte, 0, 2<<10); return &b }}

// forward sends ctx's request to b and sets the answer's status and header
// on ctx. The answer's body is returned.
func (b *backend) forward(ctx *fasthttp.RequestCtx, path []byte) (*relay, error) {
	h := &ctx.Request.Header
	buf := wires.Get().(*[]byte)
	defer wires.Put(buf)
	wire, err := appendRequest((*buf)[:0], ctx, path)
	*buf = wire[:0]
	if err != nil {
		return nil, err
	}
	r := request{addr: b.addr, wire: wire, head: h.IsHead(), replayable: replayable(h.Method(), h)}
	a, err := b.transport.send(&r, hooks{
		got1xx: func(hdr *fasthttp.ResponseHeader) error { return write1xx(ctx.Conn(), hdr) },
		// A client that goes away while the instance is silent cuts the
		// exchange short.
		waiting: func(abort func()) func() { return watchClient(ctx.Conn(), abort) },
	})
	if err != nil {
		return nil, err
	}
	code := a.resp.StatusCode()
	ctx.SetStatusCode(code)
	copyAnswerHeader(&ctx.Response.Header, &a.resp.Header)
	answer := &relay{ctx: ctx, a: a, b: b, size: max(a.resp.Header.ContentLength(), -1)}
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified:
		answer.size = 0
	case a.body != nil && answer.size < 0:
		// Of unknown length (server-sent events, a stream), each read of
		// the answer goes to the client as a chunk at once. The client may
		// go away while the instance is silent: a watch of its connection
		// then cuts the instance's answer short.
		answer.unwatch = watchClient(ctx.Conn(), a.spoil)
		ctx.Response.ImmediateHeaderFlush = true // the header goes before the first event
	}
	return answer, nil
}

// errBadField is a request header field that is not sent on: a name with a
// space in it, or a value with a line break or NUL (net/http answers 400).
var errBadField = errors.New("malformed header field")

// appendRequest appends to dst the request sent on to the instance: the
// header as received, in order and as written (fasthttp's parsed Cookie
// and Host would not be: it drops quoted cookies and lowercases the host),
// less the hop-by-hop headers, with the proxy's own; then the body.
func appendRequest(dst []byte, ctx *fasthttp.RequestCtx, path []byte) ([]byte, error) {
	h := &ctx.Request.Header
	// The headers the Connection header lists are hop-by-hop too (Te is
	// kept as trailers, below). They are read from the parsed header:
	// AllInOrder, which joins folded lines where they lie, reads the raw
	// header once.
	var listed []string
	if len(h.Peek("Connection")) > 0 {
		listed = connectionTokens(h.PeekAll("Connection"))
	}
	var host []byte
	if target := h.RequestURI(); len(target) > 0 && target[0] != '/' {
		host = ctx.URI().Host() // absolute-form: its host, as net/http
	}
	dst = append(dst, h.Method()...)
	dst = append(dst, ' ')
	dst = append(dst, path...)
	if q := ctx.URI().QueryString(); len(q) > 0 {
		dst = append(dst, '?')
		dst = append(dst, q...)
	}
	dst = append(dst, " HTTP/1.1\r\n"...)
	hasID := false
	for k, v := range h.AllInOrder() {
		if bytes.IndexByte(k, ' ') >= 0 || bytes.ContainsAny(v, "\r\n\x00") {
			return dst, errBadField
		}
		switch string(k) {
		case "Host":
			if host == nil {
				host = v
			}
			continue
		case "Connection", "Content-Length", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		case "Te":
			if bytes.Contains(bytes.ToLower(v), []byte("trailers")) {
				dst = append(dst, "Te: trailers\r\n"...)
			}
			continue
		}
		if isHop(string(k)) || isListed(listed, k) {
			continue
		}
		hasID = hasID || string(k) == "X-Request-Id"
		dst = appendField(dst, k, v)
	}
	dst = appendField(dst, []byte("Host"), host)
	if !hasID {
		dst = append(dst, "X-Request-Id: "...)
		dst = append(dst, requestID()...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		dst = ta.AddrPort().Addr().Unmap().AppendTo(dst)
	} else {
		dst = append(dst, ctx.RemoteIP().String()...)
	}
	dst = append(dst, "\r\n"...)
	dst = appendField(dst, []byte("X-Forwarded-Host"), host)
	dst = append(dst, "X-Forwarded-Proto: http\r\n"...)
	n := h.ContentLength()
	switch m := string(h.Method()); {
	case n > 0:
		dst = strconv.AppendInt(append(dst, "Content-Length: "...), int64(n), 10)
		dst = append(dst, "\r\n\r\n"...)
		// fasthttp has read it ahead whole (n ≤ inlineBody).
		dst = slices.Grow(dst, n)
		body := dst[len(dst) : len(dst)+n]
		if _, err := io.ReadFull(ctx.RequestBodyStream(), body); err != nil {
			return dst, err
		}
		return dst[:len(dst)+n], nil
	case n == 0 || m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch:
		dst = append(dst, "Content-Length: 0\r\n"...) // as net/http sends them
	}
	return append(dst, "\r\n"...), nil
}

func appendField(dst, k, v []byte) []byte {
	dst = append(dst, k...)
	dst = append(dst, ": "...)
	dst = append(dst, v...)
	return append(dst, "\r\n"...)
}

func isHop(key string) bool {
	for _, h := range hopHeaders {
		if key == h {
			return true
		}
	}
	return false
}

// connectionTokens are the field names that Connection header values
// list.
func connectionTokens[V ~string | ~[]byte](values []V) []string {
	var names []string
	for _, v := range values {
		for tok := range strings.SplitSeq(string(v), ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				names = append(names, tok)
			}
		}
	}
	return names
}

// isListed reports whether listed, the names a Connection header gives,
// has key.
func isListed(listed []string, key []byte) bool {
	for _, l := range listed {
		if strings.EqualFold(l, string(key)) {
			return true
		}
	}
	return false
}

// copyAnswerHeader copies the instance's answer header, less the hop-by-hop
// ones, those its Connection header lists, and the framing, which fasthttp
// writes.
func copyAnswerHeader(dst, src *fasthttp.ResponseHeader) {
	var listed []string
	if len(src.Peek("Connection")) > 0 {
		listed = connectionTokens(src.PeekAll("Connection"))
	}
	for k, v := range src.All() {
		if string(k) == "Content-Length" || isHop(string(k)) || isListed(listed, k) || bytes.IndexByte(k, ' ') >= 0 {
			continue
		}
		dst.AddBytesKV(k, v)
	}
	for k := range src.Trailers() {
		_ = dst.AddTrailerBytes(k)
	}
}

// write1xx sends an informational answer (103 Early Hints) to the client
// before the final one. On a pipelined connection fasthttp may still hold
// the whole answer to the request before this one, which it sends with
// this one's: the hint then comes before it, and the client takes it for
// a hint to that request. Hints are advisory, and the framing is whole.
func write1xx(c net.Conn, hdr *fasthttp.ResponseHeader) error {
	code := hdr.StatusCode()
	buf := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	for k, v := range hdr.All() {
		if !isHop(string(k)) && bytes.IndexByte(k, ' ') < 0 {
			buf = appendField(buf, k, v)
		}
	}
	buf = append(buf, "\r\n"...)
	_, err := c.Write(buf)
	return err
}

// logFailure logs a failed request, once a second at most.
func (b *backend) logFailure(path string, err error) {
	if n, ok := b.failures.allow(time.Now()); ok {
		attrs := []any{"backend", b.addr, "path", path, "err", err}
		if n > 0 {
			attrs = append(attrs, "more_since_last", n)
		}
		b.log.Warn("backend request failed", attrs...)
	}
}

// relay is the instance's answer's body as fasthttp writes it to the
// client; closing it (fasthttp does, written or not) ends the request.
type relay struct {
	ctx     *fasthttp.RequestCtx
	a       *answer
	b       *backend // its request is in flight until Close
	size    int      // the body's length, -1 if not known
	unwatch func()
	closed  bool
}

func (r *relay) Read(p []byte) (int, error) {
	n, err := r.a.Read(p)
	if err == io.EOF {
		hdr := &r.a.resp.Header
		for k := range hdr.Trailers() {
			for _, v := range hdr.PeekAllTrailer(string(k)) {
				r.ctx.Response.Header.AddBytesKV(k, v)
			}
		}
	}
	return n, err
}

func (r *relay) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.unwatch != nil {
		r.unwatch()
	}
	r.a.Close()
	r.b.inflight.Add(-1)
	return nil
}

// watchClient watches the client's connection c, while the instance is
// silent or its answer streams: when the client goes away, abort is
// called. The returned func stops the watch.
func watchClient(c net.Conn, abort func()) func() {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	_ = c.SetReadDeadline(time.Time{}) // the header's deadline is over
	done := make(chan struct{})
	go func() {
		defer close(done)
		gone := false
		var buf [1]byte
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				switch {
				case errors.Is(rerr, syscall.EINTR):
					continue
				case errors.Is(rerr, syscall.EAGAIN):
					return false // nothing yet: wait
				}
				// The end of the stream, or an error (a reset): gone. Bytes
				// (a pipelined request) end the watch; the client is there.
				gone = rerr != nil || n == 0
				return true
			}
		})
		if err == nil && gone {
			abort()
		}
	}()
	return func() {
		_ = c.SetReadDeadline(time.Unix(1, 0)) // wakes the watch
		<-done
		_ = c.SetReadDeadline(time.Time{})
	}
}

// handOff gives the connection of ctx's request to net/http, the request
// replayed first.
func (rt *route) handOff(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	var head bytes.Buffer
	head.Write(h.Method())
	head.WriteByte(' ')
	head.Write(h.RequestURI())
	head.WriteByte(' ')
	head.Write(h.Protocol())
	head.WriteString("\r\n")
	writeRawHeader(&head, h.RawHeaders())
	parts := []io.Reader{&head}
	switch n := h.ContentLength(); {
	case n > 0:
		parts = append(parts, ctx.RequestBodyStream())
	case n == -1:
		// fasthttp has taken the chunks apart: frame them again.
		parts = append(parts, &chunker{r: ctx.RequestBodyStream(), h: h})
	}
	// Counted until net/http has answered the request (see shutdown), or
	// fasthttp closes the connection without running the hijack (a failed
	// flush of an answer before it): the fasthttp ConnState hook.
	rt.pending.Store(ctx.Conn(), struct{}{})
	rt.handoffs.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		// c reads through fasthttp's reader first; all else goes to the
		// connection itself, which fasthttp does not take back (c is
		// reused once this returns, and net/http may close it after that).
		raw := c
		if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
			raw = u.UnsafeConn()
		}
		rc := &replayConn{Conn: raw, r: io.MultiReader(append(parts, c)...), done: make(chan struct{}), count: func() { rt.handedOff(raw) }}
		ln := &oneConn{c: rc, done: rc.done, closed: make(chan struct{})}
		_ = rt.srv.Serve(ln)
		if !ln.taken() {
			_ = rc.Close() // shutting down: the request is not served
		}
		rc.count()
		<-rc.done
		// fasthttp reuses its reader once this returns: no read may be
		// left running in it.
		rc.finish()
	})
}

// handedOff counts the hand-off of c done, once: net/http has answered
// its request (the connection is idle, hijacked or closed), or will never
// have it.
func (rt *route) handedOff(c net.Conn) {
	if _, ok := rt.pending.LoadAndDelete(c); ok {
		rt.handoffs.Add(-1)
	}
}

// hasRawField reports whether the header lines as received have a field
// named name.
func hasRawField(raw []byte, name string) bool {
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		if k, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte(name)) {
			return true
		}
	}
	return false
}

// writeRawHeader writes the header lines as received, each ended with
// CRLF, then the blank line that ends them; less Expect (fasthttp has
// answered 100 Continue already) and the lines folded into it.
func writeRawHeader(b *bytes.Buffer, raw []byte) {
	dropping := false
	for len(raw) > 0 {
		line, rest, _ := bytes.Cut(raw, []byte("\n"))
		raw = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // the blank line
		}
		if line[0] == ' ' || line[0] == '\t' { // folded into the line before
			if !dropping {
				b.Write(line)
				b.WriteString("\r\n")
			}
			continue
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		if dropping = bytes.EqualFold(bytes.TrimSpace(name), []byte("Expect")); !dropping {
			b.Write(line)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
}

// chunker frames what it reads from r in the chunked transfer coding, as
// it is read: nothing runs when no one reads. The trailer fasthttp read
// into h at the body's end ends it. (h stays valid: fasthttp keeps the
// request until the hand-off's hijack returns, and no read runs after.)
type chunker struct {
	r    io.Reader
	h    *fasthttp.RequestHeader
	out  []byte // framed, not yet read
	off  int
	data [16 << 10]byte
	done bool
}

func (c *chunker) Read(p []byte) (int, error) {
	for c.off == len(c.out) {
		if c.done {
			return 0, io.EOF
		}
		n, err := c.r.Read(c.data[:])
		c.out, c.off = c.out[:0], 0
		if n > 0 {
			c.out = fmt.Appendf(c.out, "%x\r\n", n)
			c.out = append(c.out, c.data[:n]...)
			c.out = append(c.out, "\r\n"...)
		}
		switch {
		case err == io.EOF:
			c.out = append(c.out, "0\r\n"...)
			for k := range c.h.Trailers() {
				for _, v := range c.h.PeekAllTrailer(string(k)) {
					c.out = appendField(c.out, k, v)
				}
			}
			c.out = append(c.out, "\r\n"...)
			c.done = true
		case err != nil:
			return 0, err
		}
	}
	n := copy(p, c.out[c.off:])
	c.off += n
	return n, nil
}

// replayConn is a handed-off connection: its reads start with what
// fasthttp has already read of it, through fasthttp's reader, until
// finish.
type replayConn struct {
	net.Conn
	mu    sync.Mutex // held by a read; see finish
	r     io.Reader
	ended bool
	once  sync.Once
	done  chan struct{}
	count func() // counts the hand-off done (route.handedOff)
}

func (c *replayConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

// CloseWrite lets net/http half-close before it lingers (a 413, a body
// left unread).
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *replayConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// finish waits for a read still running, and fails those after it.
func (c *replayConn) finish() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
}

// oneConn is a listener that accepts one connection, then blocks until the
// connection or the listener is closed.
type oneConn struct {
	mu       sync.Mutex
	c        net.Conn
	accepted bool
	done     <-chan struct{} // the connection closed
	once     sync.Once
	closed   chan struct{}
}

func (l *oneConn) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.accepted {
		l.accepted = true
		l.mu.Unlock()
		return l.c, nil
	}
	l.mu.Unlock()
	select {
	case <-l.closed:
	case <-l.done:
	}
	return nil, net.ErrClosed
}

func (l *oneConn) taken() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted
}

func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }
