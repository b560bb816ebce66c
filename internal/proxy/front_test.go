package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// servingV1 starts a proxy whose web route serves an instance "v1".
func servingV1(t *testing.T) (*Server, string) {
	t.Helper()
	s, listen := newProxy(t)
	switchTo(t, s, startInstance(t, "v1"), "r1", time.Second)
	return s, listen
}

// dial opens a raw connection to addr, closed at the test's end.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// seen is an answer read off a raw connection.
type seen struct {
	proto  string
	header http.Header
	length int64
	body   string
}

// rawRequest sends raw on conn and reads one answer to it.
func rawRequest(t *testing.T, conn net.Conn, br *bufio.Reader, raw string) seen {
	t.Helper()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("answer to %q: %v", strings.SplitN(raw, "\r\n", 2)[0], err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return seen{resp.Proto, resp.Header, resp.ContentLength, string(body)}
}

// What the instance sees of a request, and what the client sees of the
// answer, on the fast path: the request target byte for byte, the headers
// the proxy sets or drops, every Set-Cookie, and a HEAD's length.
func TestFastPathHeadersAndTargets(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1; Path=/x")
		w.Header().Add("Set-Cookie", "a=2; Path=/y")
		w.Header()["Connection"] = []string{"X-Hop", "X-Secret"}
		w.Header().Set("X-Hop", "must not reach the client")
		w.Header().Set("X-Secret", "must not reach the client")
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodHead {
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", fmt.Sprintf("uri=%s xff=%s foo=%q bar=%q te=%q ua=%q host=%q cookie=%q ct=%q body=%q", r.RequestURI,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Foo"), r.Header.Get("X-Bar"), r.Header.Get("Te"), r.Header.Get("User-Agent"),
			r.Host, r.Header.Get("Cookie"), r.Header.Get("Content-Type"), body))
		_, _ = io.WriteString(w, "ok")
	}), 0)
	_, base := serving(t, b)
	conn := dial(t, strings.TrimPrefix(base, "http://"))
	br := bufio.NewReader(conn)
	resp := rawRequest(t, conn, br, "GET /a%2Fb/c?x=1&y=%20z HTTP/1.1\r\nHost: App.Example\r\nX-Forwarded-For: 6.6.6.6\r\n"+
		"Connection: keep-alive, X-Foo\r\nX-Foo: hop\r\nConnection: X-Bar\r\nX-Bar: hop\r\nTE: trailers, deflate\r\n"+
		"Cookie: a=\"q\"; sess=\"a\\054b\"; j={\"k\":1}; ok=1\r\n\r\n")
	got := resp.header.Get("X-Seen")
	for _, want := range []string{"uri=/a%2Fb/c?x=1&y=%20z ", "xff=127.0.0.1 ", `foo="" `, `bar="" `, `te="trailers" `, `ua=""`,
		`host="App.Example"`, `cookie="a=\"q\"; sess=\"a\\054b\"; j={\"k\":1}; ok=1"`} {
		if !strings.Contains(got, want) {
			t.Errorf("the instance saw %q, lacks %q", got, want)
		}
	}
	if resp.body != "ok" || resp.header.Get("X-Hop") != "" || resp.header.Get("X-Secret") != "" || len(resp.header.Values("Set-Cookie")) != 2 {
		t.Errorf("answer: %q, header %v", resp.body, resp.header)
	}
	// A small body goes with the request, on the same connection.
	resp = rawRequest(t, conn, br, "POST /form HTTP/1.1\r\nHost: app\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
	if got := resp.header.Get("X-Seen"); !strings.Contains(got, `ct="text/plain" body="hello"`) {
		t.Errorf("small body: the instance saw %q", got)
	}
	resp = rawRequest(t, conn, br, "HEAD / HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp.length != 2 || resp.body != "" {
		t.Errorf("HEAD: length %d, body %q", resp.length, resp.body)
	}
	if b.connections() != 1 {
		t.Errorf("the fast path used %d connections to the instance, want 1 kept alive", b.connections())
	}
	// HTTP/1.0 goes to net/http, which answers it in its own terms.
	resp = rawRequest(t, conn, br, "GET /old HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n")
	if resp.proto != "HTTP/1.0" || resp.body != "ok" {
		t.Errorf("HTTP/1.0: %s %q", resp.proto, resp.body)
	}
	// A request with no header line at all (HAProxy's check).
	bare := dial(t, strings.TrimPrefix(base, "http://"))
	if got := rawRequest(t, bare, bufio.NewReader(bare), "OPTIONS / HTTP/1.0\r\n\r\n"); got.body != "ok" {
		t.Errorf("a request without headers: %q", got.body)
	}
	if b.connections() != 2 {
		t.Errorf("the proxy used %d connections to the instance, want 2 kept alive: the fast path's and net/http's", b.connections())
	}
}

// A connection that the fast path served goes on with net/http after a
// request it hands off (a WebSocket here), and one that starts with a
// large body is served to its end.
func TestHandOffKeepsTheConnection(t *testing.T) {
	_, listen := servingV1(t)
	conn := dial(t, listen)
	br := bufio.NewReader(conn)
	if got := rawRequest(t, conn, br, "GET /version HTTP/1.1\r\nHost: app\r\n\r\n"); got.body != "v1" {
		t.Fatalf("before the upgrade: %q", got.body)
	}
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if status, err := br.ReadString('\n'); err != nil || !strings.Contains(status, " 101 ") {
		t.Fatalf("upgrade: %q %v", status, err)
	}
	for line, _ := br.ReadString('\n'); line != "\r\n"; line, _ = br.ReadString('\n') {
	}
	fmt.Fprintf(conn, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "v1:hello\n" {
		t.Fatalf("websocket: %q %v", line, err)
	}

	// A body over inlineBody, then more requests on the same connection.
	conn2 := dial(t, listen)
	br2 := bufio.NewReader(conn2)
	big := strings.Repeat("x", 3*inlineBody)
	for i := range 3 {
		if got := rawRequest(t, conn2, br2, fmt.Sprintf("POST /version HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", len(big), big)); got.body != "v1" {
			t.Fatalf("request %d after a large body: %q", i, got.body)
		}
		if got := rawRequest(t, conn2, br2, "GET /version HTTP/1.1\r\nHost: app\r\n\r\n"); got.body != "v1" {
			t.Fatalf("GET %d after a large body: %q", i, got.body)
		}
	}
}

// A chunked request body reaches the instance as it is sent: the
// instance answers each line before the client sends the next.
func TestChunkedBodyIsFullDuplex(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		lines := bufio.NewScanner(r.Body)
		for lines.Scan() {
			fmt.Fprintf(w, "got %s\n", lines.Text())
			w.(http.Flusher).Flush()
		}
	}), 0)
	_, base := serving(t, b)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, base+"/echo", pr)
	req.ContentLength = -1 // chunked
	go fmt.Fprintf(pw, "one\n")
	// The answer's header comes while the body is still open: a proxy that
	// waited for the whole body would time out here.
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	lines := bufio.NewReader(resp.Body)
	for _, word := range []string{"one", "two", "three"} {
		if word != "one" {
			fmt.Fprintf(pw, "%s\n", word)
		}
		line, err := lines.ReadString('\n')
		if err != nil || line != "got "+word+"\n" {
			t.Fatalf("echo of %q: %q %v", word, line, err)
		}
	}
	_ = pw.Close()
	if rest, _ := io.ReadAll(lines); len(rest) != 0 {
		t.Fatalf("after the body ended: %q", rest)
	}
}

// Expect: 100-continue gets the instance's answer, body and all.
func TestExpectContinue(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}), 0)
	_, base := serving(t, b)
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPut, base+"/up", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "payload" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// A large header (a big cookie) passes; one over maxHeader gets 431.
func TestLargeHeaders(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d", len(r.Header.Get("Cookie")))
	}), 0)
	_, base := serving(t, b)
	cookie := "c=" + strings.Repeat("x", 20<<10)
	if code, body, _ := do(t, http.MethodGet, base+"/", http.Header{"Cookie": {cookie}}); code != 200 || body != fmt.Sprint(len(cookie)) {
		t.Fatalf("a 20 KiB cookie: %d %q", code, body)
	}
	code, _, _ := do(t, http.MethodGet, base+"/", http.Header{"Cookie": {"c=" + strings.Repeat("x", maxHeader)}})
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a header over %d bytes: %d", maxHeader, code)
	}
}

// Requests in flight on both paths finish when the route is removed, and
// the port is free at once.
func TestRemoveLetsRequestsFinish(t *testing.T) {
	s, listen := newProxy(t)
	a := startInstance(t, "v1")
	switchTo(t, s, a, "r1", time.Second)
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 2)
	go func() {
		_, body, err := fetch("http://" + listen + "/slow")
		got <- result{body, err}
	}()
	go func() {
		resp, err := http.Post("http://"+listen+"/slow", "text/plain", strings.NewReader(strings.Repeat("x", 2*inlineBody)))
		if err != nil {
			got <- result{"", err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		got <- result{string(body), err}
	}()
	waitUntil(t, "2 requests in flight", func() bool { return s.Routes()[0].InFlight == 2 })
	if err := s.Remove("web"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("the port after Remove: %v", err)
	}
	_ = ln.Close()
	for range 2 {
		if r := <-got; r.err != nil || r.body != "v1" {
			t.Fatalf("a request in flight at Remove: %q %v", r.body, r.err)
		}
	}
}

// The request target of an absolute-form request is sent on as a path.
func TestAbsoluteFormTarget(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Host, r.RequestURI)
	}), 0)
	_, base := serving(t, b)
	u, _ := url.Parse(base)
	conn := dial(t, u.Host)
	got := rawRequest(t, conn, bufio.NewReader(conn), "GET http://app.example/p?q=1 HTTP/1.1\r\nHost: app.example\r\n\r\n")
	if got.body != "app.example /p?q=1" {
		t.Fatalf("the instance saw %q", got.body)
	}
}

// A client that goes away while the instance is still silent (past
// waitingAfter), closing its connection or resetting it, closes the
// proxy's connection to the instance, whose request ends there; nothing is
// logged as the instance's failure.
func TestClientGoesAwayBeforeTheAnswer(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			ended := make(chan struct{})
			b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/wait" {
					return // the proxy's health checks
				}
				<-r.Context().Done()
				close(ended)
			}), 0)
			s, base := serving(t, b)
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET /wait HTTP/1.1\r\nHost: app\r\n\r\n")
			time.Sleep(waitingAfter + 500*time.Millisecond)
			if reset {
				_ = conn.(*net.TCPConn).SetLinger(0) // close with RST
			}
			_ = conn.Close()
			select {
			case <-ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the instance's request still runs 5s after its client went away")
			}
			waitUntil(t, "no request in flight", func() bool { return s.Routes()[0].InFlight == 0 })
			// A line logged within the last second holds the next one back.
			if _, ok := s.routes["web"].active.Load().failures.allow(time.Now()); !ok {
				t.Fatal("the client's leaving was logged as the instance's failure")
			}
		})
	}
}

// Chunked bodies that the instance does not read leave nothing running
// that reads their connection after it is gone (run with -race: such a
// read races with fasthttp's reuse of its reader for other connections),
// and requests on other connections are served whole.
//
// An upload that its instance answers without reading it all (a 401
// before the body) leaves the client's connection in step, for a body of
// known length and a chunked one alike. When the instance has read the
// body, to its end or into its socket, the connection takes the next
// request. Otherwise it closes once the answer is out, whole, whether the
// client sends the rest or stops: the answer is not held up for the rest
// of the body, even one whose end comes only after the handler (chunked,
// or to HTTP/1.0 ended by the close). What is left is never taken for a
// request, and the proxy's log has no panic. A body the instance does
// read streams back whole.
func TestUnreadBodies(t *testing.T) {
	log, logged := capturedLog()
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reject":
			w.WriteHeader(http.StatusUnauthorized)
		case "/next":
			_, _ = io.WriteString(w, "next")
		default:
			_ = http.NewResponseController(w).EnableFullDuplex()
			_, _ = io.Copy(w, r.Body)
		}
	}), 0)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	_ = ln.Close()
	s, listen := newProxyLogging(t, log)
	type upload struct {
		path    string
		proto   string
		size    int
		chunked bool
		kept    bool
		status  int
		answer  string
	}
	for _, in := range []struct {
		name string
		addr string
		// late: the client sends its first 8 KiB (http.Transport sends
		// the header on with the body's first 4 KiB), reads the answer to
		// its end, and sends no more.
		late    bool
		uploads []upload
	}{
		{"net/http", b.addr, false, []upload{
			{"/reject", "HTTP/1.1", 20 << 10, false, true, 401, ""},
			{"/reject", "HTTP/1.1", 20 << 10, true, true, 401, ""},
			{"/reject", "HTTP/1.1", 200 << 10, false, true, 401, ""},
			{"/reject", "HTTP/1.1", 200 << 10, true, true, 401, ""},
			// Too large for the instance's socket buffers: the transport
			// cannot have sent it all on.
			{"/reject", "HTTP/1.1", 16 << 20, false, false, 401, ""},
			{"/reject", "HTTP/1.1", 16 << 20, true, false, 401, ""},
		}},
		{"closes at once", closingInstance(t), true, []upload{
			{"/reject", "HTTP/1.1", 20 << 10, false, false, 401, ""},
			{"/reject", "HTTP/1.1", 200 << 10, true, false, 401, ""},
			{"/chunked", "HTTP/1.1", 200 << 10, false, false, 401, "nope."},
			{"/chunked", "HTTP/1.1", 200 << 10, true, false, 401, "nope."},
			{"/chunked", "HTTP/1.0", 200 << 10, false, false, 401, "nope."},
		}},
		{"down", down, true, []upload{
			{"/reject", "HTTP/1.1", 1 << 20, false, false, 502, ""},
			{"/reject", "HTTP/1.1", 1 << 20, true, false, 502, ""},
		}},
	} {
		if _, err := s.Switch("web", in.addr, in.name); err != nil {
			t.Fatal(err)
		}
		for _, c := range in.uploads {
			name := fmt.Sprintf("%s, %s %s, %d KiB, chunked %v", in.name, c.proto, c.path, c.size>>10, c.chunked)
			conn := dial(t, listen)
			br := bufio.NewReader(conn)
			head := fmt.Sprintf("POST %s %s\r\nHost: app\r\nContent-Length: %d\r\n\r\n", c.path, c.proto, c.size)
			body := strings.Repeat("x", c.size)
			if c.chunked {
				head = fmt.Sprintf("POST %s %s\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n", c.path, c.proto)
				body = fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", c.size, body)
			}
			if in.late {
				body = body[:8<<10]
			}
			sent := make(chan error, 1)
			go func() {
				_, err := io.WriteString(conn, head+body)
				sent <- err
			}()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: the answer's body: %v", name, err)
			}
			if resp.StatusCode != c.status || (c.answer != "" && string(got) != c.answer) {
				t.Fatalf("%s: %d %q; want %d %q", name, resp.StatusCode, got, c.status, c.answer)
			}
			if !c.kept {
				if n, err := br.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s: the connection was kept (%d more bytes came, %v); want it closed", name, n, err)
				}
				continue
			}
			if err := <-sent; err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := rawRequest(t, conn, br, "GET /next HTTP/1.1\r\nHost: app\r\n\r\n"); got.body != "next" {
				t.Fatalf("%s: the next request on the connection got %q", name, got.body)
			}
			if n := br.Buffered(); n != 0 {
				t.Fatalf("%s: %d bytes more came: a part of the body was answered", name, n)
			}
		}
	}
	if _, err := s.Switch("web", b.addr, "r2"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		payload := fmt.Sprintf("payload %d ", i) + strings.Repeat("y", i*1000)
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/echo", io.MultiReader(strings.NewReader(payload)))
		req.ContentLength = -1 // chunked, handed off too
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(body) != payload {
			t.Fatalf("echo %d: %d bytes back of %d", i, len(body), len(payload))
		}
	}
	if strings.Contains(logged(), "panic") {
		t.Fatalf("the proxy's log:\n%s", logged())
	}
}

// A chunked body that goes past MaxBody gets 413, as one of known length
// does, and is not logged as the instance's failure.
func TestChunkedBodyOverTheLimit(t *testing.T) {
	log, logged := capturedLog()
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	}), 0)
	s, listen := newProxyLogging(t, log)
	if _, err := s.Switch("web", b.addr, "r1"); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{MaxBody, MaxBody + 1} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/upload", io.LimitReader(zeros{}, size))
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		want, wantBody := http.StatusOK, fmt.Sprint(size)
		if size > MaxBody {
			want, wantBody = http.StatusRequestEntityTooLarge, "request body too large\n"
		}
		if resp.StatusCode != want || string(body) != wantBody {
			t.Errorf("%d bytes: %d %q; want %d %q", size, resp.StatusCode, body, want, wantBody)
		}
	}
	if strings.Contains(logged(), "backend request failed") {
		t.Errorf("the proxy's log:\n%s", logged())
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// closingInstance is an instance that answers each request as soon as its
// header is in, with Connection: close, and closes the connection without
// waiting for a body: 401 to POST /reject, a chunked 401 to POST /chunked,
// "next" to GET /next.
func closingInstance(t *testing.T) string {
	t.Helper()
	return rawInstance(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		for {
			if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
				break
			}
		}
		answer := "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
		switch {
		case strings.HasPrefix(line, "GET /next "):
			answer = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnext"
		case strings.HasPrefix(line, "POST /chunked "):
			answer = "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nnope.\r\n0\r\n\r\n"
		}
		_, _ = io.WriteString(c, answer)
		// What came of the body so far is read, so that the close is a
		// FIN, not a reset that could overtake the answer.
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = io.Copy(io.Discard, br)
	})
}

// A chunked upload's trailer reaches the instance: fasthttp takes the
// chunks apart, and the proxy frames them again with the trailer.
func TestRequestTrailers(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s sum=%s", body, r.Trailer.Get("X-Sum"))
	}), 0)
	_, base := serving(t, b)
	conn := dial(t, strings.TrimPrefix(base, "http://"))
	br := bufio.NewReader(conn)
	for _, c := range []struct{ trailer, want string }{
		{"X-Sum: 42\r\n", "abcd sum=42"},
		{"", "abcd sum="},
	} {
		raw := "POST /up HTTP/1.1\r\nHost: app\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n" + c.trailer + "\r\n"
		if got := rawRequest(t, conn, br, raw); got.body != c.want {
			t.Errorf("trailer %q: the instance saw %q, want %q", c.trailer, got.body, c.want)
		}
	}
}

// fasthttp answers Expect: 100-continue once; the instance does not send a
// second; a body over MaxBody is refused before it is sent.
func TestExpectContinueOnce(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}), 0)
	_, base := serving(t, b)
	conn := dial(t, strings.TrimPrefix(base, "http://"))
	br := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "PUT /up HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n")
	if line, _ := br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first answer: %q", line)
	}
	if line, _ := br.ReadString('\n'); line != "\r\n" {
		t.Fatalf("after 100: %q", line)
	}
	fmt.Fprintf(conn, "payload")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "payload" {
		t.Fatalf("final answer: %d %q", resp.StatusCode, body)
	}

	big := dial(t, strings.TrimPrefix(base, "http://"))
	_ = big.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(big, "PUT /up HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", MaxBody+1)
	if line, _ := bufio.NewReader(big).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 417 ") {
		t.Fatalf("a body over MaxBody: %q", line)
	}
}

// A request whose header fasthttp had read when the route was removed,
// and which it hands off (a large body still arriving), is answered.
func TestHandOffDuringRemove(t *testing.T) {
	s, listen := servingV1(t)
	conn := dial(t, listen)
	const n = 20000
	fmt.Fprintf(conn, "POST /version HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("x", 100))
	time.Sleep(100 * time.Millisecond)
	removed := make(chan error, 1)
	go func() { removed <- s.Remove("web") }()
	time.Sleep(100 * time.Millisecond)
	fmt.Fprint(conn, strings.Repeat("x", n-100))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request handed off during Remove: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "v1" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
}

// A stream's header reaches the client before its first event, and an
// instance may pause within its header past waitingAfter.
func TestSlowHeaders(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			time.Sleep(2 * time.Second)
			_, _ = io.WriteString(w, "data: late\n\n")
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\n")
		_ = rw.Flush()
		time.Sleep(waitingAfter + 500*time.Millisecond)
		_, _ = rw.WriteString("Content-Length: 4\r\nConnection: close\r\n\r\nslow")
		_ = rw.Flush()
	}), 0)
	_, base := serving(t, b)
	start := time.Now()
	resp, err := http.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the stream's header came after %s", took)
	}
	_ = resp.Body.Close()
	if code, body, _ := do(t, http.MethodGet, base+"/split", nil); code != 200 || body != "slow" {
		t.Fatalf("a header split past %s: %d %q", waitingAfter, code, body)
	}
}

func TestWriteRawHeader(t *testing.T) {
	for _, tt := range []struct{ raw, want string }{
		{"", "\r\n"},
		{"\r\n", "\r\n"},
		{"Host: a\r\nX: 1\r\n\r\n", "Host: a\r\nX: 1\r\n\r\n"},
		{"Host: a\nX: 1\n\n", "Host: a\r\nX: 1\r\n\r\n"}, // bare LF
		{"Host: a\r\nExpect: 100-continue\r\nX: 1\r\n\r\n", "Host: a\r\nX: 1\r\n\r\n"},
		{"X-Token: abc\r\nExpect: 100-continue\r\n more\r\nY: 2\r\n\r\n", "X-Token: abc\r\nY: 2\r\n\r\n"}, // folded into Expect
		{"Expect: 100-continue\r\n\tmore\r\nHost: a\r\n\r\n", "Host: a\r\n\r\n"},
		{"X-Long: one\r\n two\r\n\r\n", "X-Long: one\r\n two\r\n\r\n"},
	} {
		var b bytes.Buffer
		writeRawHeader(&b, []byte(tt.raw))
		if b.String() != tt.want {
			t.Errorf("writeRawHeader(%q) = %q, want %q", tt.raw, b.String(), tt.want)
		}
	}
}

// A hand-off whose connection fasthttp closes before the hijack runs (the
// flush of the answer before it failed: the client reset the connection)
// is counted out, and the route still shuts down at once.
func TestHandOffThatNeverHappens(t *testing.T) {
	s, listen := servingV1(t)
	conn := dial(t, listen)
	// An answer held back behind a pipelined request, which is handed off.
	fmt.Fprintf(conn, "GET /slow HTTP/1.1\r\nHost: app\r\n\r\nGET /version HTTP/1.0\r\nHost: app\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	_ = conn.(*net.TCPConn).SetLinger(0)
	_ = conn.Close()
	rt := s.routes["web"]
	waitUntil(t, "no hand-off pending", func() bool { return rt.handoffs.Load() == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	rt.shutdown(ctx)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("shutdown took %s", took)
	}
}

// A client that half-closes while the instance is silent gets no answer:
// the proxy does not make one up.
func TestGoneClientGetsNoAnswer(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			<-r.Context().Done()
		}
	}), 0)
	_, base := serving(t, b)
	conn := dial(t, strings.TrimPrefix(base, "http://"))
	fmt.Fprintf(conn, "GET /wait HTTP/1.1\r\nHost: app\r\n\r\n")
	time.Sleep(waitingAfter + 300*time.Millisecond)
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(conn); len(got) != 0 || err != nil {
		t.Fatalf("after the client half-closed: %q %v", got, err)
	}
}

// The fast path reads every framing an instance may answer with: a header
// larger than the connection's first read buffer, 204 and 304 with no
// body, a body that ends when the instance closes; and an answer whose
// header is over maxAnswerHeader is a 502. The connection to the
// instance is kept when the framing allows it.
func TestAnswerFraming(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("X-Big", strings.Repeat("b", 100<<10))
			_, _ = io.WriteString(w, "big")
		case "/huge":
			w.Header().Set("X-Huge", strings.Repeat("h", maxAnswerHeader))
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("Content-Length", "10") // the length of what a GET would get
			w.WriteHeader(http.StatusNotModified)
		case "/until-close":
			conn, bw, _ := http.NewResponseController(w).Hijack()
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
			_ = bw.Flush()
			_ = conn.Close()
		case "/content-length":
			fmt.Fprintf(w, "%q %d", r.Header.Get("Content-Length"), r.ContentLength)
		}
	}), 0)
	_, base := serving(t, b)
	conn := dial(t, strings.TrimPrefix(base, "http://"))
	br := bufio.NewReader(conn)
	get := func(path string) seen { return rawRequest(t, conn, br, "GET "+path+" HTTP/1.1\r\nHost: app\r\n\r\n") }
	for _, path := range []string{"/204", "/304"} {
		if got := get(path); got.body != "" {
			t.Errorf("%s: body %q", path, got.body)
		}
	}
	if got := rawRequest(t, conn, br, "POST /content-length HTTP/1.1\r\nHost: app\r\n\r\n"); got.body != `"0" 0` {
		t.Errorf("a POST with no body reached the instance with Content-Length and length %s", got.body)
	}
	if n := b.connections(); n != 1 {
		t.Errorf("%d connections to the instance for answers that allow keeping it, want 1", n)
	}
	if got := get("/until-close"); got.body != "until the end" {
		t.Errorf("a body that ends at the close: %q", got.body)
	}
	if got := get("/huge"); got.header.Get("X-Huge") != "" || got.body != "" {
		t.Errorf("a header over %d bytes reached the client: %d bytes", maxAnswerHeader, len(got.header.Get("X-Huge")))
	}
	// A connection whose reader grew for a large header is not kept.
	before := b.connections()
	for range 2 {
		if got := get("/big"); got.body != "big" || len(got.header.Get("X-Big")) != 100<<10 {
			t.Errorf("a 100 KiB header: %q, X-Big of %d bytes", got.body, len(got.header.Get("X-Big")))
		}
	}
	if n := b.connections() - before; n != 2 {
		t.Errorf("two answers with a 100 KiB header took %d new connections, want 2", n)
	}

	// A header ended by bare line feeds is a 502 at once: fasthttp's parser
	// would wait for a CRLF CRLF that does not come.
	lf := rawInstance(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			if req.URL.Path == "/health" {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
		}
	})
	_, lfBase := serving(t, &backendServer{addr: lf})
	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	resp, err := client.Get(lfBase + "/")
	if err != nil {
		t.Fatalf("a header ended by bare line feeds: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || time.Since(start) > 2*time.Second {
		t.Errorf("a header ended by bare line feeds: %d after %s, want a 502 at once", resp.StatusCode, time.Since(start).Round(time.Millisecond))
	}
}

// Fields reach the instance as the client sent them: a folded value joined
// by spaces, whatever else the header holds; and an X-Request-Id that the
// Connection header lists (hop-by-hop, so dropped) is replaced by the
// proxy's own.
func TestRequestFieldsAsSent(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%q %q", r.Header.Values("X-A"), r.Header.Get("X-Request-Id"))
	}), 0)
	_, base := serving(t, b)
	for _, extra := range []string{"", "Connection: keep-alive\r\n"} {
		c := dial(t, strings.TrimPrefix(base, "http://"))
		got := rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: app\r\n"+extra+"X-Request-Id: mine\r\nX-A: a\r\n b\r\n\tc\r\n\r\n")
		if got.body != `["a b c"] "mine"` {
			t.Errorf("with %q, the instance saw %s", extra, got.body)
		}
	}
	c := dial(t, strings.TrimPrefix(base, "http://"))
	got := rawRequest(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: app\r\nConnection: X-Request-Id\r\nX-Request-Id: mine\r\n\r\n")
	if _, id, _ := strings.Cut(got.body, " "); id == `""` || id == `"mine"` {
		t.Errorf("a listed X-Request-Id: the instance saw %s", id)
	}
}

// An answer to HEAD with no length keeps its connection to the instance
// (fasthttp's parser takes it for a body that ends at the close), unless
// it says Connection: close.
func TestHeadWithoutLength(t *testing.T) {
	for _, closing := range []bool{false, true} {
		b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if closing {
				w.Header().Set("Connection", "close")
			}
		}), 0)
		_, base := serving(t, b)
		conn := dial(t, strings.TrimPrefix(base, "http://"))
		br := bufio.NewReader(conn)
		for range 3 {
			if got := rawRequest(t, conn, br, "HEAD / HTTP/1.1\r\nHost: app\r\n\r\n"); got.body != "" {
				t.Fatalf("HEAD: body %q", got.body)
			}
		}
		want := 1
		if closing {
			want = 3
		}
		if n := b.connections(); n != want {
			t.Errorf("Connection: close %v: 3 HEADs took %d connections to the instance, want %d", closing, n, want)
		}
	}
}

// A header name with a space in it, which fasthttp lets through, gets the
// proxy's own 400 (net/http's would come from the instance); a value with
// a NUL in it gets fasthttp's.
func TestMalformedFieldsAreRefused(t *testing.T) {
	b := startBackend(t, answering("ok"), 0)
	_, base := serving(t, b)
	for field, want := range map[string]string{"Bad Name: x": "bad request header\n", "X-Nul: a\x00b": "Error when parsing request"} {
		conn := dial(t, strings.TrimPrefix(base, "http://"))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: app\r\n%s\r\n\r\n", field)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", field, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || string(body) != want {
			t.Errorf("%q: %d %q, want 400 %q", field, resp.StatusCode, body, want)
		}
	}
}

// A request with both Content-Length and Transfer-Encoding gets 400, and
// its connection closes: what follows is not served, whichever framing a
// proxy in front of this one took. One with Transfer-Encoding alone is.
func TestBothFramingsAreRefused(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.URL.Path, body)
	}), 0)
	_, base := serving(t, b)
	const next = "GET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n"
	for _, c := range []struct {
		head string
		want []string
	}{
		{"Content-Length: 4\r\nTransfer-Encoding: chunked", []string{"400"}},
		{"Transfer-Encoding: chunked\r\ncontent-length: 4", []string{"400"}},
		{"Transfer-Encoding: chunked", []string{"200 /both abcd", "200 /smuggled "}},
	} {
		conn := dial(t, strings.TrimPrefix(base, "http://"))
		fmt.Fprintf(conn, "POST /both HTTP/1.1\r\nHost: app\r\n%s\r\n\r\n4\r\nabcd\r\n0\r\n\r\n%s", c.head, next)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		var got []string
		for len(got) < len(c.want) {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: answer %d: %v", c.head, len(got)+1, err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, body))
			if resp.StatusCode == http.StatusBadRequest {
				got[len(got)-1] = "400"
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%q: answers %q, want %q", c.head, got, c.want)
		}
		if c.want[0] == "400" {
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("%q: after the 400, %v; want the connection closed", c.head, err)
			}
		}
	}
}
