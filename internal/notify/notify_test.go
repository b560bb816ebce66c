package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a notification endpoint on loopback. It answers the statuses
// it was given, in order, then 200.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []received
}

type received struct {
	method, path string
	header       http.Header
	body         []byte
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{req.Method, req.URL.Path, req.Header.Clone(), body})
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// texts returns the "text" of every message received.
func (r *receiver) texts(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, q := range r.requests() {
		var m Message
		if err := json.Unmarshal(q.body, &m); err != nil {
			t.Fatalf("body %s: %v", q.body, err)
		}
		out = append(out, m.Text)
	}
	return out
}

// logBuffer collects a Notifier's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newNotifier returns a Notifier for urls with short backoff, and its logs.
func newNotifier(t *testing.T, urls ...string) (*Notifier, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	n := New(urls, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	n.backoff = 10 * time.Millisecond
	return n, logs
}

// fakeClock stands in for the wall clock: the reminder interval is an hour.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// closedURL returns a URL on 127.0.0.1 where nothing listens.
func closedURL(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + path
}

func TestSendPostsJSONToEveryURL(t *testing.T) {
	a, b := newReceiver(t), newReceiver(t)
	n, _ := newNotifier(t, a.URL+"/hook", b.URL)
	n.Send(t.Context(), Message{
		App: "board", Commit: "1a2b3c4d5e6f7a8b9c0d", Previous: "9f8e7d6c5b4a", Outcome: Succeeded,
		Duration: 3200 * time.Millisecond, DeployID: 12, Host: "web-1",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)),
	})

	want := map[string]any{
		"app":              "board",
		"commit":           "1a2b3c4d5e6f7a8b9c0d",
		"previous_commit":  "9f8e7d6c5b4a",
		"outcome":          "succeeded",
		"duration_seconds": 3.2,
		"deploy_id":        12.0,
		"host":             "web-1",
		"text":             "board: deploy 12 of 1a2b3c4 succeeded in 3.2s, replacing 9f8e7d6",
		"time":             "2026-01-02T02:04:05Z",
	}
	for name, r := range map[string]*receiver{"first": a, "second": b} {
		got := r.requests()
		if len(got) != 1 {
			t.Fatalf("%s URL got %d requests, want 1", name, len(got))
		}
		q := got[0]
		if q.method != http.MethodPost || q.header.Get("User-Agent") != "slipway" || q.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s URL: %s with User-Agent %q, Content-Type %q", name, q.method,
				q.header.Get("User-Agent"), q.header.Get("Content-Type"))
		}
		var body map[string]any
		if err := json.Unmarshal(q.body, &body); err != nil {
			t.Fatalf("%s URL body %s: %v", name, q.body, err)
		}
		for k, v := range want {
			if body[k] != v {
				t.Errorf("%s URL: %q = %#v, want %#v", name, k, body[k], v)
			}
		}
		for k := range body {
			if _, ok := want[k]; !ok {
				t.Errorf("%s URL: unexpected field %q = %#v", name, k, body[k])
			}
		}
	}
	if got := a.requests()[0].path; got != "/hook" {
		t.Errorf("path = %q, want /hook", got)
	}
}

func TestSendFillsTimeHostAndText(t *testing.T) {
	r := newReceiver(t)
	n, _ := newNotifier(t, r.URL)
	clock := &fakeClock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	n.Now = clock.Now
	n.Send(t.Context(), Message{App: "board", Commit: "abcdef0123", Outcome: Failed, Error: "build: exit status 1", DeployID: 3})

	var m Message
	if err := json.Unmarshal(r.requests()[0].body, &m); err != nil {
		t.Fatal(err)
	}
	if !m.Time.Equal(clock.Now()) || m.Host != n.host || m.Text != "board: deploy 3 of abcdef0 failed at build: exit status 1" {
		t.Errorf("got time %v, host %q, text %q", m.Time, m.Host, m.Text)
	}
}

func TestRepeatedFailureIsSentOnceThenReminded(t *testing.T) {
	r := newReceiver(t)
	n, _ := newNotifier(t, r.URL)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	n.Now = clock.Now
	n.ReminderEvery = time.Hour

	fail := func(err string) Message {
		return Message{App: "board", Commit: "1a2b3c4d", Outcome: RolledBack, Error: err, DeployID: 1}
	}
	steps := []struct {
		name     string
		advance  time.Duration
		msg      Message
		wantSent bool
		wantText string // substring of the text sent
	}{
		{"first failure is sent", 0, fail("health: 503"), true, "failed at health"},
		{"the same failure a minute later is held back", time.Minute, fail("health: 503"), false, ""},
		{"and again before the hour", 58 * time.Minute, fail("health: 503"), false, ""},
		{"after ReminderEvery a reminder goes out", time.Hour, fail("health: 503"), true,
			"(reminder: the same failure happened 2 more times since 2026-01-01 12:01 UTC, not sent)"},
		{"right after the reminder it is held back again", time.Second, fail("health: 503"), false, ""},
		{"a different error is sent", time.Second, fail("smoke: board refuses anonymous calls: got 200"), true, "failed at smoke"},
		{"the same error as a plain failure is sent", time.Second, Message{App: "board", Commit: "1a2b3c4d", Outcome: Failed, Error: "health: 503"}, true, "failed at health"},
		{"the same error on another commit is sent", time.Second, Message{App: "board", Commit: "ffff0000", Outcome: RolledBack, Error: "health: 503"}, true, "of ffff000"},
		{"a manual rollback is always sent", time.Second, Message{App: "board", Commit: "0000aaaa", Outcome: Rollback}, true, "rolled back to 0000aaa"},
		{"the first failure is still held back", time.Second, fail("health: 503"), false, ""},
		{"a success is always sent", time.Second, Message{App: "board", Commit: "2b3c4d5e", Outcome: Succeeded}, true, "succeeded"},
		{"a second success is sent too", time.Second, Message{App: "board", Commit: "2b3c4d5e", Outcome: Succeeded}, true, "succeeded"},
		{"after a success the failure is news again", time.Second, fail("health: 503"), true, "failed at health"},
		{"and held back once more", time.Second, fail("health: 503"), false, ""},
	}
	sent := 0
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clock.Advance(s.advance)
			n.Send(t.Context(), s.msg)
			if s.wantSent {
				sent++
			}
			texts := r.texts(t)
			if len(texts) != sent {
				t.Fatalf("%d notifications received, want %d: %q", len(texts), sent, texts)
			}
			if s.wantSent {
				if last := texts[len(texts)-1]; !strings.Contains(last, s.wantText) {
					t.Errorf("text %q does not contain %q", last, s.wantText)
				}
			}
		})
	}
}

func TestDefaultReminderIsAnHour(t *testing.T) {
	r := newReceiver(t)
	n, _ := newNotifier(t, r.URL)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	n.Now = clock.Now
	m := Message{App: "board", Commit: "1a2b3c4d", Outcome: Failed, Error: "build: exit status 1"}
	for _, advance := range []time.Duration{0, 59 * time.Minute, time.Minute} {
		clock.Advance(advance)
		n.Send(t.Context(), m)
	}
	if got := len(r.requests()); got != 2 {
		t.Errorf("%d notifications in one hour and one minute, want 2 (the failure and one reminder)", got)
	}
}

func TestConcurrentIdenticalFailuresAreSentOnce(t *testing.T) {
	r := newReceiver(t)
	n, _ := newNotifier(t, r.URL)
	m := Message{App: "board", Commit: "1a2b3c4d", Outcome: Failed, Error: "build: exit status 1"}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { n.Send(t.Context(), m) })
	}
	wg.Wait()
	if got := len(r.requests()); got != 1 {
		t.Errorf("%d notifications, want 1", got)
	}
}

func TestUndeliveredFailureIsNotDeduped(t *testing.T) {
	// Every attempt of the first Send gets a 500: nobody heard of the
	// failure, so its next occurrence is sent as news.
	r := newReceiver(t, 500, 500, 500)
	n, _ := newNotifier(t, r.URL)
	m := Message{App: "board", Commit: "1a2b3c4d", Outcome: Failed, Error: "build: exit status 1"}
	n.Send(t.Context(), m)
	n.Send(t.Context(), m)

	got := r.requests()
	if len(got) != 4 {
		t.Fatalf("%d requests, want 3 attempts then 1", len(got))
	}
	if texts := r.texts(t); texts[3] != texts[0] {
		t.Errorf("second text %q, want the first one again, %q", texts[3], texts[0])
	}
}

func TestRetries(t *testing.T) {
	cases := []struct {
		name         string
		statuses     []int
		wantRequests int
		wantWarning  string // "" = delivered
	}{
		{"500 then 200 is retried", []int{500, 200}, 2, ""},
		{"429 then 200 is retried", []int{429, 200}, 2, ""},
		{"two 503s then 200", []int{503, 503, 200}, 3, ""},
		{"three 502s give up after two retries", []int{502, 502, 502, 200}, 3, "502 Bad Gateway"},
		{"a 400 is not retried", []int{400}, 1, "400 Bad Request"},
		{"a 404 is not retried", []int{404}, 1, "404 Not Found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, c.statuses...)
			n, logs := newNotifier(t, r.URL)
			n.Send(t.Context(), Message{App: "board", Outcome: Succeeded})
			if got := len(r.requests()); got != c.wantRequests {
				t.Errorf("%d requests, want %d", got, c.wantRequests)
			}
			warned := strings.Contains(logs.String(), "notification not delivered")
			switch {
			case c.wantWarning == "" && warned:
				t.Errorf("delivered, yet logged:\n%s", logs)
			case c.wantWarning != "" && !strings.Contains(logs.String(), c.wantWarning):
				t.Errorf("log does not say %q:\n%s", c.wantWarning, logs)
			}
			bodies := map[string]bool{}
			for _, q := range r.requests() {
				bodies[string(q.body)] = true
			}
			if len(bodies) != 1 {
				t.Errorf("retries sent %d different bodies, want the same one", len(bodies))
			}
		})
	}
}

func TestUnreachableURLDoesNotBlock(t *testing.T) {
	r := newReceiver(t)
	n, logs := newNotifier(t, closedURL(t, "/hook"), r.URL)
	start := time.Now()
	n.Send(t.Context(), Message{App: "board", Outcome: Failed, Error: "health: 503"})
	if took := time.Since(start); took > DefaultTimeout {
		t.Errorf("Send took %s with a closed port", took)
	}
	if len(r.requests()) != 1 {
		t.Errorf("the reachable URL got %d requests, want 1", len(r.requests()))
	}
	if !strings.Contains(logs.String(), `"attempts":3`) || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("want three attempts and the reason logged:\n%s", logs)
	}
}

// hangingURL accepts connections and never answers until the client leaves.
func hangingURL(t *testing.T) string {
	t.Helper()
	done := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client leave
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(done) }) // runs first
	return s.URL
}

func TestSlowURLIsBoundedByTheTimeout(t *testing.T) {
	n, logs := newNotifier(t, hangingURL(t))
	n.timeout = 100 * time.Millisecond
	start := time.Now()
	n.Send(t.Context(), Message{App: "board", Outcome: Succeeded})
	// Three attempts of 100ms and 10ms+20ms of backoff.
	if took := time.Since(start); took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("Send took %s, want three timed-out attempts", took)
	}
	if !strings.Contains(logs.String(), "no answer within 100ms") {
		t.Errorf("log does not name the timeout:\n%s", logs)
	}
}

func TestSendReturnsWhenContextEnds(t *testing.T) {
	n, logs := newNotifier(t, hangingURL(t))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	n.Send(ctx, Message{App: "board", Outcome: Succeeded})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Send took %s after its context ended at 200ms", took)
	}
	if !strings.Contains(logs.String(), `"attempts":1`) || !strings.Contains(logs.String(), "gave up: context deadline exceeded") {
		t.Errorf("want one attempt and the reason logged:\n%s", logs)
	}
}

func TestLogsNameTheHostNotTheURL(t *testing.T) {
	const secret = "T0KEN-s3cr3t"
	failing := newReceiver(t, 500, 500, 500)
	elsewhere := newReceiver(t)
	redirecting := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/in/"+secret, http.StatusTemporaryRedirect))
	t.Cleanup(redirecting.Close)
	closed := closedURL(t, "/services/"+secret)

	n, logs := newNotifier(t,
		failing.URL+"/hooks/"+secret,
		closed+"?token="+secret,
		"http://user:"+secret+"@"+strings.TrimPrefix(redirecting.URL, "http://")+"/x",
		"ftp://"+secret+"@example.com/",
	)
	n.Send(t.Context(), Message{App: "board", Outcome: Failed, Error: "migrate: exit status 2"})

	out := logs.String()
	if strings.Contains(out, secret) {
		t.Errorf("the log holds the token:\n%s", out)
	}
	closedHost, _, _ := strings.Cut(strings.TrimPrefix(closed, "http://"), "/")
	for _, host := range []string{failing.Listener.Addr().String(), closedHost, redirecting.Listener.Addr().String()} {
		if !strings.Contains(out, `"host":"`+host+`"`) {
			t.Errorf("the log does not name host %s:\n%s", host, out)
		}
	}
	if !strings.Contains(out, `"index":3`) {
		t.Errorf("the skipped URL is not named by its index:\n%s", out)
	}
	if len(elsewhere.requests()) != 0 {
		t.Errorf("the redirect to another host was followed")
	}
}

func TestRedirects(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		otherHost bool
		delivered bool
	}{
		{"307 on the same host is followed", http.StatusTemporaryRedirect, false, true},
		{"308 on the same host is followed", http.StatusPermanentRedirect, false, true},
		{"307 to another host is not", http.StatusTemporaryRedirect, true, false},
		{"302 turns the POST into a GET: not followed", http.StatusFound, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			other := newReceiver(t)
			var mu sync.Mutex
			var final []received
			mux := http.NewServeMux()
			mux.HandleFunc("/final", func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				final = append(final, received{method: r.Method, body: body})
				mu.Unlock()
			})
			mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
				to := "/final"
				if c.otherHost {
					to = other.URL + "/final"
				}
				http.Redirect(w, r, to, c.status)
			})
			s := httptest.NewServer(mux)
			t.Cleanup(s.Close)

			n, logs := newNotifier(t, s.URL+"/start")
			n.Send(t.Context(), Message{App: "board", Outcome: Succeeded})
			mu.Lock()
			defer mu.Unlock()
			if c.delivered {
				if len(final) != 1 || final[0].method != http.MethodPost || !json.Valid(final[0].body) {
					t.Errorf("want one POST with the message at the target, got %+v", final)
				}
				return
			}
			if len(final)+len(other.requests()) != 0 {
				t.Errorf("the redirect was followed")
			}
			if !strings.Contains(logs.String(), "redirect not followed") {
				t.Errorf("the log does not say why:\n%s", logs)
			}
		})
	}
}

func TestLoopbackIsNeverProxied(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://proxy.invalid:3128")
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
	t.Setenv("NO_PROXY", "")
	for _, raw := range []string{
		"http://127.0.0.1:9/hook", "http://127.8.9.10/hook", "https://[::1]:9/hook",
		"http://localhost:9/hook", "http://LOCALHOST./hook", "http://hooks.localhost/x",
	} {
		req := httptest.NewRequest(http.MethodPost, raw, nil)
		if u, err := proxy(req); u != nil || err != nil {
			t.Errorf("%s goes through proxy %v (err %v)", raw, u, err)
		}
	}
}

func TestNothingToSend(t *testing.T) {
	var none *Notifier
	none.Send(t.Context(), Message{Outcome: Failed}) // must not panic
	n, logs := newNotifier(t, "", "not a url", "mailto:ops@example.com")
	n.Send(t.Context(), Message{Outcome: Failed})
	if got := strings.Count(logs.String(), "notify URL skipped"); got != 3 {
		t.Errorf("%d URLs reported skipped, want 3:\n%s", got, logs)
	}
}
