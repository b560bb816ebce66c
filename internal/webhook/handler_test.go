package webhook

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// A delivery, as the table tests send it.
type delivery struct {
	name       string
	branch     string // the branch the handler watches
	headers    map[string]string
	body       []byte
	wantStatus int
	wantBody   map[string]any // nil: only the key wantKey is checked
	wantKey    string
	wantResult string
	wantPush   *Event
}

func runDeliveries(t *testing.T, p Provider, cases []delivery) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			branch := tc.branch
			if branch == "" {
				branch = "main"
			}
			srv := httptest.NewServer(NewHandler(p, testSecret, branch, NewReplay(16), rec.onPush, rec.observe))
			t.Cleanup(srv.Close)

			status, got := deliver(t, http.MethodPost, srv.URL, tc.headers, bytes.NewReader(tc.body))
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d (answer %v)", status, tc.wantStatus, got)
			}
			if tc.wantBody != nil && !reflect.DeepEqual(got, tc.wantBody) {
				t.Errorf("answer = %v, want %v", got, tc.wantBody)
			}
			if tc.wantKey != "" {
				if _, ok := got[tc.wantKey]; !ok {
					t.Errorf("answer = %v, want a %q key", got, tc.wantKey)
				}
			}
			srv.Close() // the handler has returned: the recorder is complete
			results, pushes := rec.snapshot()
			if want := []string{string(p) + ":" + tc.wantResult}; !reflect.DeepEqual(results, want) {
				t.Errorf("observed %v, want %v", results, want)
			}
			switch {
			case tc.wantPush == nil && len(pushes) != 0:
				t.Errorf("onPush called with %+v, want no call", pushes)
			case tc.wantPush != nil && (len(pushes) != 1 || pushes[0] != *tc.wantPush):
				t.Errorf("onPush called with %+v, want exactly %+v", pushes, *tc.wantPush)
			}
		})
	}
}

var accepted = map[string]any{"accepted": true}

func TestHandlerGitHub(t *testing.T) {
	ping := payload(t, "ping.json")
	master := payload(t, "push-branch-master.json")
	tagDeleted := payload(t, "push-tag-deleted.json")
	headers := func(event string, body []byte, secret []byte) map[string]string {
		return map[string]string{
			"X-GitHub-Event":      event,
			"X-GitHub-Delivery":   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			"X-Hub-Signature-256": "sha256=" + sign(secret, body),
		}
	}
	without := func(h map[string]string, key string) map[string]string {
		delete(h, key)
		return h
	}
	with := func(h map[string]string, key, value string) map[string]string {
		h[key] = value
		return h
	}
	masterPush := Event{
		Provider: GitHub,
		Kind:     "push",
		Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		Ref:      "refs/heads/master",
		Branch:   "master",
		After:    "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
	}
	runDeliveries(t, GitHub, []delivery{
		{
			name: "ping", headers: headers("ping", ping, testSecret), body: ping,
			wantStatus: 200, wantBody: map[string]any{"ok": true, "event": "ping"}, wantResult: "ping",
		},
		{
			name: "push to the watched branch", branch: "master",
			headers: headers("push", master, testSecret), body: master,
			wantStatus: 202, wantBody: accepted, wantResult: "accepted", wantPush: &masterPush,
		},
		{
			name: "push to another branch", branch: "main",
			headers: headers("push", master, testSecret), body: master,
			wantStatus: 202, wantBody: map[string]any{"ignored": `push to branch "master", watching "main"`}, wantResult: "ignored",
		},
		{
			name: "tag deleted", branch: "master",
			headers: headers("push", tagDeleted, testSecret), body: tagDeleted,
			wantStatus: 202, wantBody: map[string]any{"ignored": `tag "refs/tags/simple-tag" deleted`}, wantResult: "ignored",
		},
		{
			name: "other event", branch: "master",
			headers: headers("issues", master, testSecret), body: master,
			wantStatus: 202, wantBody: map[string]any{"ignored": `event "issues" is not a push`}, wantResult: "ignored",
		},
		{
			name: "forged signature", branch: "master",
			headers: with(headers("push", master, testSecret), "X-Hub-Signature-256", "sha256="+strings.Repeat("ab", 32)), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "missing signature", branch: "master",
			headers: without(headers("push", master, testSecret), "X-Hub-Signature-256"), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "wrong secret", branch: "master",
			headers: headers("push", master, []byte("not the secret")), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "body changed after signing", branch: "master",
			headers: headers("push", master, testSecret), body: bytes.Replace(master, []byte("refs/heads/master"), []byte("refs/heads/mastex"), 1),
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "signature of the empty body", branch: "master",
			headers: headers("push", nil, testSecret), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "SHA-1 signature only", branch: "master",
			headers: with(without(headers("push", master, testSecret), "X-Hub-Signature-256"), "X-Hub-Signature", "sha1=0123456789012345678901234567890123456789"), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "signature without sha256= prefix", branch: "master",
			headers: with(headers("push", master, testSecret), "X-Hub-Signature-256", sign(testSecret, master)), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "signature not hex", branch: "master",
			headers: with(headers("push", master, testSecret), "X-Hub-Signature-256", "sha256="+strings.Repeat("zz", 32)), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "truncated signature", branch: "master",
			headers: with(headers("push", master, testSecret), "X-Hub-Signature-256", "sha256="+sign(testSecret, master)[:62]), body: master,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "signed push that is not JSON", branch: "master",
			headers: headers("push", []byte("{not json"), testSecret), body: []byte("{not json"),
			wantStatus: 400, wantKey: "error", wantResult: "bad_request",
		},
		{
			name: "signed push without a ref", branch: "master",
			headers: headers("push", []byte(`{"after":"abc"}`), testSecret), body: []byte(`{"after":"abc"}`),
			wantStatus: 400, wantKey: "error", wantResult: "bad_request",
		},
		{
			name: "signed form-encoded push", branch: "master",
			headers: with(headers("push", []byte("payload=%7B%7D"), testSecret), "Content-Type", "application/x-www-form-urlencoded"), body: []byte("payload=%7B%7D"),
			wantStatus: 400, wantKey: "error", wantResult: "bad_request",
		},
		{
			name: "signed request without an event header", branch: "master",
			headers: without(headers("push", master, testSecret), "X-GitHub-Event"), body: master,
			wantStatus: 400, wantKey: "error", wantResult: "bad_request",
		},
	})
}

func TestHandlerGitLab(t *testing.T) {
	const sha = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
	zeros := strings.Repeat("0", 40)
	push := gitlabPush("refs/heads/main", sha, sha)
	headers := func(event, token string) map[string]string {
		return map[string]string{
			"X-Gitlab-Event":        event,
			"X-Gitlab-Token":        token,
			"X-Gitlab-Event-UUID":   "13792a34-cac6-4fda-95a8-c58e00a3954e",
			"X-Gitlab-Webhook-UUID": "6e2e9a5e-3a1d-4c2b-9c6e-0e5f1b7d8f9a",
			"X-Gitlab-Instance":     "https://gitlab.example.com",
		}
	}
	runDeliveries(t, GitLab, []delivery{
		{
			name: "push to the watched branch", headers: headers("Push Hook", string(testSecret)), body: push,
			wantStatus: 202, wantBody: accepted, wantResult: "accepted",
			wantPush: &Event{Provider: GitLab, Kind: "push", Delivery: "13792a34-cac6-4fda-95a8-c58e00a3954e", Ref: "refs/heads/main", Branch: "main", After: sha},
		},
		{
			name: "push to another branch", headers: headers("Push Hook", string(testSecret)), body: gitlabPush("refs/heads/dev", sha, sha),
			wantStatus: 202, wantKey: "ignored", wantResult: "ignored",
		},
		{
			name: "branch deleted", headers: headers("Push Hook", string(testSecret)), body: gitlabPush("refs/heads/main", zeros, nil),
			wantStatus: 202, wantBody: map[string]any{"ignored": `"refs/heads/main" deleted`}, wantResult: "ignored",
		},
		{
			name: "tag push", headers: headers("Tag Push Hook", string(testSecret)), body: gitlabPush("refs/tags/v1.0.0", sha, sha),
			wantStatus: 202, wantBody: map[string]any{"ignored": `tag push "refs/tags/v1.0.0"`}, wantResult: "ignored",
		},
		{
			name: "merge request", headers: headers("Merge Request Hook", string(testSecret)), body: []byte(`{"object_kind":"merge_request"}`),
			wantStatus: 202, wantKey: "ignored", wantResult: "ignored",
		},
		{
			name: "wrong token", headers: headers("Push Hook", "not the secret"), body: push,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "token with a trailing byte", headers: headers("Push Hook", string(testSecret)+"x"), body: push,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "missing token", headers: headers("Push Hook", ""), body: push,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "push that is not JSON", headers: headers("Push Hook", string(testSecret)), body: []byte("ref=refs/heads/main"),
			wantStatus: 400, wantKey: "error", wantResult: "bad_request",
		},
	})
}

func TestHandlerGitea(t *testing.T) {
	const sha = "bffeb74224043ba2feb48d137756c8a9331c449a"
	push := giteaPush("refs/heads/main", sha)
	headers := func(event string, body []byte, sigHeader, sig string) map[string]string {
		h := map[string]string{
			"X-Gitea-Event":    event,
			"X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
			"X-Gogs-Event":     event,
			"X-GitHub-Event":   event,
		}
		if sigHeader != "" {
			h[sigHeader] = sig
		}
		return h
	}
	want := Event{Provider: Gitea, Kind: "push", Delivery: "f6266f16-1bf3-46a5-9ea4-602e06ead473", Ref: "refs/heads/main", Branch: "main", After: sha}
	runDeliveries(t, Gitea, []delivery{
		{
			name: "X-Gitea-Signature", headers: headers("push", push, "X-Gitea-Signature", sign(testSecret, push)), body: push,
			wantStatus: 202, wantBody: accepted, wantResult: "accepted", wantPush: &want,
		},
		{
			name: "X-Hub-Signature-256", headers: headers("push", push, "X-Hub-Signature-256", "sha256="+sign(testSecret, push)), body: push,
			wantStatus: 202, wantBody: accepted, wantResult: "accepted", wantPush: &want,
		},
		{
			name: "bad X-Gitea-Signature", headers: headers("push", push, "X-Gitea-Signature", sign([]byte("not the secret"), push)), body: push,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "bad X-Hub-Signature-256", headers: headers("push", push, "X-Hub-Signature-256", "sha256="+sign([]byte("not the secret"), push)), body: push,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "missing signature", headers: headers("push", push, "", ""), body: push,
			wantStatus: 401, wantKey: "error", wantResult: "unauthorized",
		},
		{
			name: "branch deleted", headers: headers("push", giteaPush("refs/heads/main", strings.Repeat("0", 40)), "X-Gitea-Signature", sign(testSecret, giteaPush("refs/heads/main", strings.Repeat("0", 40)))),
			body:       giteaPush("refs/heads/main", strings.Repeat("0", 40)),
			wantStatus: 202, wantKey: "ignored", wantResult: "ignored",
		},
		{
			name: "create event", headers: headers("create", []byte(`{"ref":"v1"}`), "X-Gitea-Signature", sign(testSecret, []byte(`{"ref":"v1"}`))),
			body:       []byte(`{"ref":"v1"}`),
			wantStatus: 202, wantBody: map[string]any{"ignored": `event "create" is not a push`}, wantResult: "ignored",
		},
	})
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(NewHandler(GitHub, testSecret, "main", nil, rec.onPush, rec.observe))
	t.Cleanup(srv.Close)
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), method, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("status = %d, want 405", resp.StatusCode)
			}
			if allow := resp.Header.Get("Allow"); allow != http.MethodPost {
				t.Errorf("Allow = %q, want POST", allow)
			}
		})
	}
	srv.Close()
	results, pushes := rec.snapshot()
	if want := strings.Fields(strings.Repeat("github:method_not_allowed ", 4)); !reflect.DeepEqual(results, want) {
		t.Errorf("observed %v, want %v", results, want)
	}
	if len(pushes) != 0 {
		t.Errorf("onPush called with %+v", pushes)
	}
}

func TestHandlerDuplicateDelivery(t *testing.T) {
	master := payload(t, "push-branch-master.json")
	rec := &recorder{}
	srv := httptest.NewServer(NewHandler(GitHub, testSecret, "master", NewReplay(8), rec.onPush, rec.observe))
	t.Cleanup(srv.Close)
	send := func(id string) (int, map[string]any) {
		return deliver(t, http.MethodPost, srv.URL, map[string]string{
			"X-GitHub-Event":      "push",
			"X-GitHub-Delivery":   id,
			"X-Hub-Signature-256": "sha256=" + sign(testSecret, master),
		}, bytes.NewReader(master))
	}

	if status, got := send("delivery-1"); status != 202 || !reflect.DeepEqual(got, accepted) {
		t.Fatalf("first delivery: %d %v, want 202 accepted", status, got)
	}
	status, got := send("delivery-1")
	if want := map[string]any{"ignored": "duplicate delivery"}; status != 200 || !reflect.DeepEqual(got, want) {
		t.Errorf("repeated delivery: %d %v, want 200 %v", status, got, want)
	}
	if status, got := send("delivery-2"); status != 202 || !reflect.DeepEqual(got, accepted) {
		t.Errorf("next delivery: %d %v, want 202 accepted", status, got)
	}
	srv.Close()
	results, pushes := rec.snapshot()
	if want := []string{"github:accepted", "github:duplicate", "github:accepted"}; !reflect.DeepEqual(results, want) {
		t.Errorf("observed %v, want %v", results, want)
	}
	if len(pushes) != 2 {
		t.Errorf("onPush called %d times, want 2", len(pushes))
	}
}

func TestHandlerForgedDeliveryIsNotRemembered(t *testing.T) {
	master := payload(t, "push-branch-master.json")
	h := NewHandler(GitHub, testSecret, "master", NewReplay(8), nil, nil)
	send := func(sig string) int {
		req := httptest.NewRequest(http.MethodPost, "/webhook/github", bytes.NewReader(master))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "delivery-1")
		req.Header.Set("X-Hub-Signature-256", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	if code := send("sha256=" + strings.Repeat("00", 32)); code != 401 {
		t.Fatalf("forged delivery: %d, want 401", code)
	}
	if code := send("sha256=" + sign(testSecret, master)); code != 202 {
		t.Errorf("genuine delivery with the forged one's id: %d, want 202", code)
	}
}

// streamed hides the length of b from the HTTP client, which then sends it
// chunked, without a Content-Length.
func streamed(b []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(b)} }

// unreadBody fails the test if the handler reads it.
type unreadBody struct{ t *testing.T }

func (b unreadBody) Read([]byte) (int, error) {
	b.t.Error("body read although Content-Length is over the limit")
	return 0, io.EOF
}

func TestHandlerTooLarge(t *testing.T) {
	macs := countMACs(t)
	big := bytes.Repeat([]byte(" "), MaxBody+1)
	bigSig := "sha256=" + sign(testSecret, big)
	rec := &recorder{}
	h := NewHandler(GitHub, testSecret, "master", NewReplay(8), rec.onPush, rec.observe)

	t.Run("Content-Length over the limit", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/webhook/github", unreadBody{t})
		req.ContentLength = MaxBody + 1
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", bigSig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d, want 413", w.Code)
		}
	})

	var lengths []int64 // the Content-Length each request arrived with
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lengths = append(lengths, r.ContentLength) // one request at a time
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	headers := map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": bigSig}
	t.Run("streamed without Content-Length", func(t *testing.T) {
		status, got := deliver(t, http.MethodPost, srv.URL, headers, streamed(big))
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d (%v), want 413", status, got)
		}
	})
	t.Run("Content-Length over the limit over HTTP", func(t *testing.T) {
		status, got := deliver(t, http.MethodPost, srv.URL, headers, bytes.NewReader(big))
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d (%v), want 413", status, got)
		}
	})
	if n := macs.Load(); n != 0 {
		t.Errorf("%d HMACs computed for oversized bodies, want none", n)
	}

	t.Run("exactly MaxBody is accepted", func(t *testing.T) {
		master := payload(t, "push-branch-master.json")
		body := append(bytes.Clone(master), bytes.Repeat([]byte("\n"), MaxBody-len(master))...)
		status, got := deliver(t, http.MethodPost, srv.URL, map[string]string{
			"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(testSecret, body),
		}, streamed(body))
		if status != http.StatusAccepted || !reflect.DeepEqual(got, accepted) {
			t.Errorf("status = %d %v, want 202 accepted", status, got)
		}
		if n := macs.Load(); n != 1 {
			t.Errorf("%d HMACs computed, want 1", n)
		}
	})
	srv.Close()
	if want := []int64{-1, MaxBody + 1, -1}; !reflect.DeepEqual(lengths, want) {
		t.Errorf("requests arrived with Content-Length %v, want %v", lengths, want)
	}
	results, _ := rec.snapshot()
	if want := []string{"github:too_large", "github:too_large", "github:too_large", "github:accepted"}; !reflect.DeepEqual(results, want) {
		t.Errorf("observed %v, want %v", results, want)
	}
}

func TestNewHandlerUnknownProvider(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewHandler accepted provider \"bitbucket\"")
		}
	}()
	NewHandler("bitbucket", testSecret, "main", nil, nil, nil)
}

// discard is a ResponseWriter that keeps nothing, so the benchmark measures
// the handler alone.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func BenchmarkRejectForged(b *testing.B) {
	body := []byte(`{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246"}`)
	h := NewHandler(GitHub, testSecret, "main", NewReplay(DefaultReplaySize), nil, nil)
	req := httptest.NewRequest(http.MethodPost, "/webhook/github", nil)
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("ab", 32))
	req.ContentLength = int64(len(body))
	rd := bytes.NewReader(body)
	req.Body = io.NopCloser(rd)
	check := httptest.NewRecorder()
	h.ServeHTTP(check, req)
	if check.Code != http.StatusUnauthorized {
		b.Fatalf("forged delivery answered %d, want 401", check.Code)
	}
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}
