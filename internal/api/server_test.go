package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/events"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// backend stands in for the agent, which has its own end-to-end tests in
// cmd/slipway: these tests are about the HTTP layer.
type backend struct{ queued []Request }

func (b *backend) Status(context.Context) (any, error) { return map[string]string{"app": "board"}, nil }
func (b *backend) Enqueue(_ context.Context, r Request) (int64, error) {
	b.queued = append(b.queued, r)
	return int64(len(b.queued)), nil
}
func (b *backend) Wait(context.Context, int64) (deploy.Summary, bool) { return deploy.Summary{}, true }

const token = "0123456789abcdef-token"

func newServer(t *testing.T) (*Server, *backend) {
	t.Helper()
	db, err := ledger.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	b := &backend{}
	s := New([]byte(token))
	s.Backend, s.Ledger, s.Broker, s.LogDir = b, db, events.New(10), t.TempDir()
	return s, b
}

func TestAuth(t *testing.T) {
	s, _ := newServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"health is open", "/health", "", 200},
		{"no token", "/status", "", 401},
		{"wrong token", "/status", "Bearer nope", 401},
		{"token prefix", "/status", "Bearer " + token[:10], 401},
		{"not bearer", "/status", "Basic " + token, 401},
		{"right token", "/status", "Bearer " + token, 200},
		{"the scheme in any case", "/status", "bearer " + token, 200},
		{"BEARER", "/status", "BEARER " + token, 200},
		{"scheme without token", "/status", "Bearer", 401},
		{"token without scheme", "/status", token, 401},
		{"unknown route without token", "/admin", "", 401},
		{"unknown route with token", "/admin", "Bearer " + token, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestPostDeployValidates(t *testing.T) {
	s, b := newServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"empty body deploys the tip", ``, 202},
		{"a commit", `{"commit":"0a1b2c3d"}`, 202},
		{"a ref", `{"ref":"release/1.2"}`, 202},
		{"option injection", `{"ref":"--upload-pack=touch /tmp/x"}`, 400},
		{"not hex", `{"commit":"HEAD~1"}`, 400},
		{"both", `{"ref":"main","commit":"0a1b2c3d"}`, 400},
		{"unknown field", `{"sha":"0a1b2c3d"}`, 400},
		{"trailing data", `{} {}`, 400},
		{"too large", `{"ref":"` + strings.Repeat("a", MaxBody) + `"}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/deploys", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if len(b.queued) != 3 || b.queued[0].Trigger != "api" {
		t.Fatalf("queued %+v", b.queued)
	}
}

// Requests over the unix socket need no token: its mode is the check.
func TestUnixSocketIsTrusted(t *testing.T) {
	s, b := newServer(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := HTTPServer(s.Handler())
	go func() { _ = hs.Serve(l) }()
	defer func() { _ = hs.Close() }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Post("http://agent/deploys", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 202 || len(b.queued) != 1 || b.queued[0].Trigger != "manual" {
		t.Fatalf("status %d, queued %+v", resp.StatusCode, b.queued)
	}
}
