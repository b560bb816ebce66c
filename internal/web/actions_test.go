package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-dev/slipway/internal/api"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/lock"
)

// recorder is a Backend that records what the pages asked of it; the
// agent's own is driven by the browser tests against the real binary.
type recorder struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (b *recorder) note(s string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, s)
	return b.err
}

func (b *recorder) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

func (b *recorder) Enqueue(_ context.Context, r api.Request) (int64, error) {
	return 42, b.note(r.Kind + " commit=" + r.Commit + " to=" + r.To + " by " + r.Actor + " via " + r.Trigger)
}

func (b *recorder) Freeze(_ context.Context, msg, actor string) error {
	return b.note("freeze " + msg + " by " + actor)
}

func (b *recorder) Unfreeze(_ context.Context, actor string) (string, error) {
	return "deploys unfrozen", b.note("unfreeze by " + actor)
}

func (b *recorder) Restore(_ context.Context, id, actor string) (string, error) {
	return "restored", b.note("restore " + id + " by " + actor)
}

func (b *recorder) ServiceLog(_ context.Context, name string, n int) (string, error) {
	return fmt.Sprintf("the last %d lines of %s", n, name), nil
}

// An action asks first and acts on the confirmation, with the signed-in
// actor; without the CSRF token, signed out, or as a viewer it is refused
// and nothing is done.
func TestActionsNeedConfirmationCSRFAndAnOperator(t *testing.T) {
	b := &recorder{}
	s := newSiteWith(t, func(srv *Server) { srv.Backend = b })
	if resp, _ := s.post("/actions/deploy", url.Values{}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("signed out: %d, want 401", resp.StatusCode)
	}
	if resp, _ := s.post("/signin", url.Values{"token": {operatorToken}, "name": {"alice"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	csrf := s.csrf()
	if resp, _ := s.post("/actions/deploy", url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.post("/actions/deploy", url.Values{"confirm": {"yes"}, "csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a wrong CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.post("/actions/launch", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown action: %d, want 404", resp.StatusCode)
	}
	resp, body := s.post("/actions/deploy", url.Values{"csrf": {csrf}, "commit": {"abc123"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Deploy commit abc123?") || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("the first post asks: %d\n%s", resp.StatusCode, body)
	}
	if calls := b.got(); len(calls) != 0 {
		t.Fatalf("asking did something: %q", calls)
	}
	if resp, body := s.post("/actions/deploy", url.Values{"csrf": {csrf}, "commit": {"abc; rm -rf /"}, "confirm": {"yes"}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "hex commit id") {
		t.Errorf("a bad commit: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := s.post("/actions/freeze", url.Values{"csrf": {csrf}, "confirm": {"yes"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a freeze without a message: %d, want 400", resp.StatusCode)
	}
	for _, c := range []struct {
		action string
		form   url.Values
		where  string
		call   string
	}{
		{"deploy", url.Values{"commit": {"abc123"}}, "/history/42", "deploy commit=abc123 to= by web:alice via web"},
		{"deploy", url.Values{}, "/history/42", "deploy commit= to= by web:alice via web"},
		{"rollback", url.Values{"to": {"def456"}}, "/history/42", "rollback commit= to=def456 by web:alice via web"},
		{"freeze", url.Values{"message": {"release party"}}, "/", "freeze release party by web:alice"},
		{"unfreeze", url.Values{}, "/", "unfreeze by web:alice"},
		{"restore", url.Values{"snapshot": {"snap-1"}}, "/snapshots", "restore snap-1 by web:alice"},
	} {
		before := len(b.got())
		c.form.Set("csrf", csrf)
		c.form.Set("confirm", "yes")
		resp, body := s.post("/actions/"+c.action, c.form)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != c.where {
			t.Errorf("%s confirmed: %d to %q\n%s", c.action, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if calls := b.got(); len(calls) != before+1 || calls[before] != c.call {
			t.Errorf("%s confirmed did %q, want %q", c.action, calls[before:], c.call)
		}
	}
	b.err = &lock.LockedError{Holder: lock.Holder{User: "bob", Frozen: true, Message: "hands off"}}
	if resp, body := s.post("/actions/deploy", url.Values{"csrf": {csrf}, "confirm": {"yes"}}); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "hands off") {
		t.Errorf("a deploy while frozen: %d\n%s", resp.StatusCode, body)
	}
	b.err = fmt.Errorf("%w: /opt/board/env/backend.env is 0644: chmod 0600 /opt/board/env/backend.env", deploy.ErrEnvNotPrivate)
	if resp, body := s.post("/actions/rollback", url.Values{"csrf": {csrf}, "confirm": {"yes"}, "to": {"def456"}}); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "chmod 0600") {
		t.Errorf("a rollback with a loose env file: %d\n%s", resp.StatusCode, body)
	}
	b.err = errors.New("disk full")
	if resp, body := s.post("/actions/deploy", url.Values{"csrf": {csrf}, "confirm": {"yes"}}); resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "disk full") {
		t.Errorf("a failing deploy: %d\n%s", resp.StatusCode, body)
	}
	b.err = nil

	// A viewer sees the forms, disabled, and is refused what they post.
	v := newSiteWith(t, func(srv *Server) { srv.Backend = b })
	v.signIn(viewerToken)
	vcsrf := v.csrf()
	_, home := v.get("/")
	if !strings.Contains(home, "change nothing") || !strings.Contains(home, "disabled") {
		t.Errorf("a viewer's status page:\n%s", home)
	}
	before := len(b.got())
	for _, action := range []string{"deploy", "rollback", "freeze", "unfreeze", "restore"} {
		resp, body := v.post("/actions/"+action, url.Values{"csrf": {vcsrf}, "confirm": {"yes"}, "message": {"x"}, "snapshot": {"s"}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "viewer") {
			t.Errorf("a viewer's %s: %d\n%s", action, resp.StatusCode, body)
		}
	}
	if calls := b.got(); len(calls) != before {
		t.Errorf("a viewer's posts did %q", calls[before:])
	}
}

// The banner says how far behind the remote the live release is; the
// services page gives each service's state, pid, uptime, restarts and
// the tail of its log.
func TestBannerAndServicesPage(t *testing.T) {
	s := newSiteWith(t, func(srv *Server) {
		srv.Backend = &recorder{}
		srv.Status = func(context.Context) (any, error) {
			return map[string]any{
				"current":     map[string]string{"name": "r1", "commit": liveCommit, "version": "v9.9"},
				"safe_commit": liveCommit, "healthy": true, "remote_tip": "fedcba9876543210", "behind": 3,
				"services": []map[string]any{
					{"name": "backend", "running": true, "pid": 4242, "since": "2026-12-02T08:00:00Z", "restarts": 2},
					{"name": "worker", "running": false, "stopped": true},
				},
			}, nil
		}
	})
	s.signIn(operatorToken)
	_, body := s.get("/")
	for _, want := range []string{"fedcba9", "3 commits behind", "APP_VERSION v9.9"} {
		if !strings.Contains(body, want) {
			t.Errorf("the banner lacks %q:\n%s", want, body)
		}
	}
	resp, body := s.get("/services")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /services: %d", resp.StatusCode)
	}
	// The site's clock stands at 09:00: an hour after the start.
	for _, want := range []string{"4242", "1h0m0s", "<td>2</td>", "stopped", "the last 30 lines of backend", "the last 30 lines of worker"} {
		if !strings.Contains(body, want) {
			t.Errorf("the services page lacks %q:\n%s", want, body)
		}
	}
}
