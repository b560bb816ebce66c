package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	operatorToken = "op-token-3f9a"
	viewerToken   = "view-token-77c1"
	liveCommit    = "0123456789abcdef0123456789abcdef01234567"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// site is the pages on a real listener, and a browser-like client that
// keeps cookies and does not follow redirects.
type site struct {
	t     *testing.T
	srv   *Server
	url   string
	clock *clock
	c     *http.Client
}

func newSite(t *testing.T) *site {
	t.Helper()
	return newSiteWith(t, nil)
}

// newSiteWith is newSite with the server changed by edit before it serves.
func newSiteWith(t *testing.T, edit func(*Server)) *site {
	t.Helper()
	s := New("board", []byte(operatorToken), []byte(viewerToken))
	clk := &clock{now: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	s.Now = clk.Now
	s.Status = func(context.Context) (any, error) {
		return map[string]any{
			"current":     map[string]string{"name": "r1", "commit": liveCommit, "version": "v9.9-secret"},
			"safe_commit": liveCommit, "healthy": true,
			"last_deploy": map[string]any{"id": 7, "kind": "deploy", "commit": liveCommit, "outcome": "succeeded", "started": "2026-12-02T08:00:00Z"},
		}, nil
	}
	if edit != nil {
		edit(s)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &site{t: t, srv: s, url: hs.URL, clock: clk, c: c}
}

// reply is a response, read and closed.
type reply struct {
	StatusCode int
	Header     http.Header
	cookies    []*http.Cookie
}

func (r reply) Cookies() []*http.Cookie { return r.cookies }

func (s *site) do(req *http.Request) (reply, string) {
	s.t.Helper()
	resp, err := s.c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, resp.Cookies()}, string(b)
}

func (s *site) get(path string) (reply, string) {
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	return s.do(req)
}

func (s *site) post(path string, form url.Values, header ...string) (reply, string) {
	req, _ := http.NewRequest(http.MethodPost, s.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.do(req)
}

func (s *site) signIn(token string) reply {
	s.t.Helper()
	resp, _ := s.post("/signin", url.Values{"token": {token}})
	return resp
}

// csrf is the signed-in session's CSRF token, as the page's forms carry it.
func (s *site) csrf() string {
	s.t.Helper()
	_, body := s.get("/")
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok {
		s.t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// Signed out, the page is a banner: the app's name and "Sign in for
// status", and nothing of the host.
func TestSignedOutShowsOnlyTheBanner(t *testing.T) {
	s := newSite(t)
	resp, body := s.get("/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "board") || !strings.Contains(body, "Sign in for status") {
		t.Fatalf("GET / signed out: %d\n%s", resp.StatusCode, body)
	}
	for _, secret := range []string{liveCommit[:7], "v9.9-secret", "succeeded"} {
		if strings.Contains(body, secret) {
			t.Errorf("the signed-out page shows %q", secret)
		}
	}
	// A token in the URL signs nobody in.
	if resp, _ := s.get("/signin?token=" + operatorToken); len(resp.Cookies()) != 0 {
		t.Errorf("GET /signin?token= set a cookie")
	}
	if _, body := s.get("/"); strings.Contains(body, liveCommit[:7]) {
		t.Errorf("after GET /signin?token=, the page shows the commit")
	}
}

// The API token signs in an operator: an HttpOnly, SameSite=Strict
// cookie (Secure behind a proxy that says the browser used TLS), and the
// banner shows the host.
func TestSignIn(t *testing.T) {
	s := newSite(t)
	resp := s.signIn(operatorToken)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	c := resp.Cookies()
	if len(c) != 1 || c[0].Name != CookieName || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Secure {
		t.Fatalf("the session cookie: %+v", c)
	}
	if strings.Contains(c[0].Value, operatorToken) {
		t.Fatal("the cookie holds the token")
	}
	_, body := s.get("/")
	for _, want := range []string{liveCommit[:7], "v9.9-secret", "#7", "succeeded", "operator"} {
		if !strings.Contains(body, want) {
			t.Errorf("signed in, the page lacks %q:\n%s", want, body)
		}
	}
	proxied := newSite(t)
	resp, _ = proxied.post("/signin", url.Values{"token": {viewerToken}}, "X-Forwarded-Proto", "https")
	if c := resp.Cookies(); len(c) != 1 || !c[0].Secure {
		t.Errorf("behind a TLS proxy the cookie is not Secure: %+v", c)
	}
}

// Failed sign-ins from one address are limited: after five in a minute
// even the right token waits, with 429 and Retry-After, until the minute
// is over.
func TestFailedSignInsAreRateLimited(t *testing.T) {
	s := newSite(t)
	for i := range SignInFailures {
		if resp := s.signIn("wrong-" + string(rune('a'+i))); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp := s.signIn(operatorToken)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || len(resp.Cookies()) != 0 {
		t.Fatalf("after %d failures, the right token: %d (Retry-After %q), want 429 and no session", SignInFailures, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	s.clock.add(61 * time.Second)
	if resp := s.signIn(operatorToken); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a minute later: %d, want 303", resp.StatusCode)
	}
}

// Sign-out needs the session's CSRF token; a session also ends by itself
// at its TTL.
func TestSignOutAndExpiry(t *testing.T) {
	s := newSite(t)
	s.signIn(operatorToken)
	if resp, _ := s.post("/signout", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out without the CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.post("/signout", url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out with a forged CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.post("/signout", url.Values{"csrf": {s.csrf()}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if _, body := s.get("/"); !strings.Contains(body, "Sign in for status") {
		t.Fatalf("after sign-out:\n%s", body)
	}

	s.signIn(viewerToken)
	if _, body := s.get("/"); !strings.Contains(body, "viewer") {
		t.Fatalf("signed in with the viewer token:\n%s", body)
	}
	s.clock.add(DefaultTTL)
	if _, body := s.get("/"); !strings.Contains(body, "Sign in for status") || strings.Contains(body, liveCommit[:7]) {
		t.Fatalf("after the TTL the session still stands:\n%s", body)
	}
	// Sessions that ended are not kept: signing in again leaves one.
	s.signIn(operatorToken)
	s.clock.add(DefaultTTL)
	s.signIn(operatorToken)
	s.srv.mu.Lock()
	n := len(s.srv.sessions)
	s.srv.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d sessions kept, want 1", n)
	}
}
