package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// githubPayloads holds real GitHub payloads (octokit/webhooks), in the shared
// checkout that CI clones beside this repository.
const githubPayloads = "../../testdata/webhooks/github"

var testSecret = []byte("correct horse battery staple")

// payload reads one of the real GitHub payloads.
func payload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(githubPayloads, name))
	if err != nil {
		t.Fatalf("read test payload: %v (the shared/ checkout must sit beside the repository)", err)
	}
	return b
}

// sign returns the hex HMAC-SHA256 of body under secret.
func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// gitlabPush builds a GitLab push payload like the ones GitLab sends.
func gitlabPush(ref, after string, checkoutSHA any) []byte {
	kind := "push"
	if len(ref) > 10 && ref[:10] == "refs/tags/" {
		kind = "tag_push"
	}
	b, err := json.Marshal(map[string]any{
		"object_kind":         kind,
		"event_name":          kind,
		"before":              "95790bf891e76fee5e1747ab589903a6a1f80f22",
		"after":               after,
		"ref":                 ref,
		"ref_protected":       true,
		"checkout_sha":        checkoutSHA,
		"user_id":             4,
		"user_name":           "John Smith",
		"project_id":          15,
		"project":             map[string]any{"id": 15, "name": "Diaspora", "default_branch": "main"},
		"commits":             []any{},
		"total_commits_count": 0,
		"repository":          map[string]any{"name": "Diaspora", "url": "git@example.com:mike/diaspora.git"},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// giteaPush builds a Gitea push payload like the ones Gitea sends.
func giteaPush(ref, after string) []byte {
	b, err := json.Marshal(map[string]any{
		"ref":           ref,
		"before":        "28e1879d029cb852e4844d9c718537df08844e03",
		"after":         after,
		"compare_url":   "http://localhost:3000/gitea/webhooks/compare/28e1879d...bffeb748",
		"commits":       []any{},
		"total_commits": 0,
		"repository":    map[string]any{"id": 140, "full_name": "gitea/webhooks", "default_branch": "main"},
		"pusher":        map[string]any{"login": "gitea"},
		"sender":        map[string]any{"login": "gitea"},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// countMACs replaces newMAC with one that counts the HMACs made, until the
// test ends. Tests that use it must not be parallel.
func countMACs(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	orig := newMAC
	newMAC = func(key []byte) hash.Hash {
		n.Add(1)
		return orig(key)
	}
	t.Cleanup(func() { newMAC = orig })
	return &n
}

// recorder collects what a handler reports: its observe results and the
// events it hands to onPush.
type recorder struct {
	mu      sync.Mutex
	results []string
	pushes  []Event
}

func (r *recorder) onPush(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes = append(r.pushes, e)
}

func (r *recorder) observe(p Provider, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, string(p)+":"+result)
}

func (r *recorder) snapshot() (results []string, pushes []Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.results...), append([]Event(nil), r.pushes...)
}

// deliver POSTs body with headers to url over real HTTP and returns the
// status and the decoded JSON answer.
func deliver(t *testing.T, method, url string, headers map[string]string, body io.Reader) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if method != http.MethodHead {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		if err := json.Unmarshal(bytes.TrimSpace(raw), &got); err != nil {
			t.Fatalf("answer %q is not JSON: %v", raw, err)
		}
	}
	return resp.StatusCode, got
}
