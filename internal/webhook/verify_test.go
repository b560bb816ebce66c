package webhook

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// newRequest builds a request to Verify, as a server would receive it.
func newRequest(headers map[string]string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

// GitHub documents this secret, body and signature ("Validating webhook
// deliveries"), which checks the HMAC against an independent computation.
func TestVerifyGitHubDocumentedSignature(t *testing.T) {
	r := newRequest(map[string]string{
		"X-GitHub-Event":      "issues",
		"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
	}, []byte("Hello, World!"))
	e, err := Verify(GitHub, []byte("It's a Secret to Everybody"), r)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if e.Kind != "issues" || e.Provider != GitHub {
		t.Errorf("event = %+v, want a GitHub issues event", e)
	}
}

// An empty secret refuses everything, including requests "signed" with the
// empty key and GitLab requests whose token is empty too.
func TestVerifyEmptySecret(t *testing.T) {
	body := giteaPush("refs/heads/main", "bffeb74224043ba2feb48d137756c8a9331c449a")
	cases := []struct {
		p       Provider
		headers map[string]string
	}{
		{GitHub, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(nil, body)}},
		{GitHub, map[string]string{"X-GitHub-Event": "push"}},
		{Gitea, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(nil, body)}},
		{GitLab, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": ""}},
		{GitLab, map[string]string{"X-Gitlab-Event": "Push Hook"}},
	}
	for _, secret := range [][]byte{nil, {}} {
		for _, tc := range cases {
			if _, err := Verify(tc.p, secret, newRequest(tc.headers, body)); !errors.Is(err, ErrSignature) {
				t.Errorf("%s %v with secret %q: err = %v, want ErrSignature", tc.p, tc.headers, secret, err)
			}
		}
	}
}

func TestVerifyUnknownProvider(t *testing.T) {
	_, err := Verify("bitbucket", testSecret, newRequest(nil, nil))
	if err == nil || errors.Is(err, ErrSignature) || errors.Is(err, ErrPayload) {
		t.Errorf("err = %v, want an unknown-provider error", err)
	}
}

func TestVerifyGiteaPrefersItsOwnHeader(t *testing.T) {
	body := giteaPush("refs/heads/main", "bffeb74224043ba2feb48d137756c8a9331c449a")
	// A wrong X-Gitea-Signature is not rescued by a right X-Hub-Signature-256.
	_, err := Verify(Gitea, testSecret, newRequest(map[string]string{
		"X-Gitea-Event":       "push",
		"X-Gitea-Signature":   sign([]byte("other"), body),
		"X-Hub-Signature-256": "sha256=" + sign(testSecret, body),
	}, body))
	if !errors.Is(err, ErrSignature) {
		t.Errorf("err = %v, want ErrSignature", err)
	}
}

// A GitLab token is checked before the body is read.
func TestVerifyGitLabTokenBeforeBody(t *testing.T) {
	r := newRequest(map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong"}, nil)
	r.Body = io.NopCloser(unreadBody{t})
	r.ContentLength = -1
	if _, err := Verify(GitLab, testSecret, r); !errors.Is(err, ErrSignature) {
		t.Errorf("err = %v, want ErrSignature", err)
	}
}

// failingBody fails mid-read, as a client that hangs up does.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestVerifyReadError(t *testing.T) {
	r := newRequest(map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + strings.Repeat("00", 32)}, nil)
	r.Body = io.NopCloser(failingBody{})
	_, err := Verify(GitHub, testSecret, r)
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrSignature) {
		t.Errorf("err = %v, want the read error", err)
	}
}

// FuzzVerify sends random bodies and headers: Verify never panics, never
// accepts a request it cannot have verified, and never refuses the
// signature of a correctly signed one.
func FuzzVerify(f *testing.F) {
	master := payload(f, "push-branch-master.json")
	f.Add(uint8(0), payload(f, "ping.json"), "ping", "", true)
	f.Add(uint8(0), master, "push", "sha256="+sign(testSecret, master), false)
	f.Add(uint8(0), payload(f, "push-tag-deleted.json"), "push", "sha256=", false)
	f.Add(uint8(1), gitlabPush("refs/heads/main", "abc", nil), "Push Hook", string(testSecret), false)
	f.Add(uint8(1), gitlabPush("refs/tags/v1", "abc", "abc"), "Tag Push Hook", "", true)
	f.Add(uint8(2), giteaPush("refs/heads/main", "abc"), "push", "00", false)
	f.Add(uint8(2), []byte(`{"ref":1}`), "push", "", true)
	f.Add(uint8(2), []byte(`null`), "push", "", true)
	providers := []Provider{GitHub, GitLab, Gitea}
	f.Fuzz(func(t *testing.T, pi uint8, body []byte, event, sig string, signIt bool) {
		p := providers[int(pi)%len(providers)]
		h := map[string]string{}
		switch p {
		case GitHub:
			h["X-GitHub-Event"], h["X-GitHub-Delivery"], h["X-Hub-Signature-256"] = event, sig, sig
			if signIt {
				h["X-Hub-Signature-256"] = "sha256=" + sign(testSecret, body)
			}
		case Gitea:
			h["X-Gitea-Event"], h["X-Gitea-Delivery"], h["X-Gitea-Signature"] = event, sig, sig
			if signIt {
				h["X-Gitea-Signature"] = sign(testSecret, body)
			}
		case GitLab:
			h["X-Gitlab-Event"], h["X-Gitlab-Event-UUID"], h["X-Gitlab-Token"] = event, sig, sig
			if signIt {
				h["X-Gitlab-Token"] = string(testSecret)
			}
		}
		r := &http.Request{Method: http.MethodPost, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		for k, v := range h {
			r.Header[http.CanonicalHeaderKey(k)] = []string{v}
		}
		e, err := Verify(p, testSecret, r)

		mac := sign(testSecret, body)
		genuine := signIt ||
			(p == GitHub && len(sig) > 7 && sig[:7] == "sha256=" && strings.EqualFold(sig[7:], mac)) ||
			(p == Gitea && strings.EqualFold(sig, mac)) ||
			(p == GitLab && sig == string(testSecret))
		switch {
		case len(body) > MaxBody:
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("oversized body: err = %v", err)
			}
		case !genuine && err == nil:
			t.Fatalf("accepted an unsigned request: %+v", e)
		case !genuine && !errors.Is(err, ErrSignature):
			t.Fatalf("unsigned request: err = %v, want ErrSignature", err)
		case genuine && errors.Is(err, ErrSignature):
			t.Fatalf("signed request refused: %v", err)
		case genuine && err != nil && !errors.Is(err, ErrPayload):
			t.Fatalf("signed request: err = %v, want nil or ErrPayload", err)
		case err == nil && (e.Provider != p || (e.Kind == "push" && e.Ref == "")):
			t.Fatalf("inconsistent event %+v", e)
		}
	})
}
