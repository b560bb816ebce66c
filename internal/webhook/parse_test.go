package webhook

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const sha = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
	zeros := strings.Repeat("0", 40)
	cases := []struct {
		name    string
		p       Provider
		headers map[string]string
		body    []byte
		want    Event
		wantErr error
	}{
		{
			name:    "github ping",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d1"},
			body:    payload(t, "ping.json"),
			want:    Event{Provider: GitHub, Kind: "ping", Delivery: "d1"},
		},
		{
			name:    "github push to master",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "push"},
			body:    payload(t, "push-branch-master.json"),
			want:    Event{Provider: GitHub, Kind: "push", Ref: "refs/heads/master", Branch: "master", After: "6113728f27ae82c7b1a177c8d03f9e96e0adf246"},
		},
		{
			name:    "github tag deleted",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "push"},
			body:    payload(t, "push-tag-deleted.json"),
			want:    Event{Provider: GitHub, Kind: "push", Ref: "refs/tags/simple-tag", Tag: true, Deleted: true, After: zeros},
		},
		{
			name:    "github deleted flag alone",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "push"},
			body:    []byte(`{"ref":"refs/heads/main","deleted":true}`),
			want:    Event{Provider: GitHub, Kind: "push", Ref: "refs/heads/main", Branch: "main", Deleted: true},
		},
		{
			name:    "github sha-256 repository deletion",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "push"},
			body:    []byte(`{"ref":"refs/heads/main","after":"` + strings.Repeat("0", 64) + `"}`),
			want:    Event{Provider: GitHub, Kind: "push", Ref: "refs/heads/main", Branch: "main", Deleted: true, After: strings.Repeat("0", 64)},
		},
		{
			name:    "github push to a pull ref",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "push"},
			body:    []byte(`{"ref":"refs/pull/1/head","after":"` + sha + `"}`),
			want:    Event{Provider: GitHub, Kind: "push", Ref: "refs/pull/1/head", After: sha},
		},
		{
			name:    "github other events are not decoded",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "issues"},
			body:    []byte(`not json`),
			want:    Event{Provider: GitHub, Kind: "issues"},
		},
		{
			name:    "github no event header",
			p:       GitHub,
			body:    payload(t, "push-branch-master.json"),
			want:    Event{Provider: GitHub},
			wantErr: ErrPayload,
		},
		{
			name:    "github deleted of the wrong type",
			p:       GitHub,
			headers: map[string]string{"X-GitHub-Event": "push"},
			body:    []byte(`{"ref":"refs/heads/main","deleted":"no"}`),
			want:    Event{Provider: GitHub, Kind: "push"},
			wantErr: ErrPayload,
		},
		{
			name:    "gitlab push",
			p:       GitLab,
			headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u1"},
			body:    gitlabPush("refs/heads/main", sha, sha),
			want:    Event{Provider: GitLab, Kind: "push", Delivery: "u1", Ref: "refs/heads/main", Branch: "main", After: sha},
		},
		{
			name:    "gitlab branch deleted",
			p:       GitLab,
			headers: map[string]string{"X-Gitlab-Event": "Push Hook"},
			body:    gitlabPush("refs/heads/main", zeros, nil),
			want:    Event{Provider: GitLab, Kind: "push", Ref: "refs/heads/main", Branch: "main", Deleted: true, After: zeros},
		},
		{
			name:    "gitlab null checkout_sha alone means deleted",
			p:       GitLab,
			headers: map[string]string{"X-Gitlab-Event": "Push Hook"},
			body:    []byte(`{"ref":"refs/heads/main","after":"` + sha + `","checkout_sha":null}`),
			want:    Event{Provider: GitLab, Kind: "push", Ref: "refs/heads/main", Branch: "main", Deleted: true, After: sha},
		},
		{
			name:    "gitlab without checkout_sha",
			p:       GitLab,
			headers: map[string]string{"X-Gitlab-Event": "Push Hook"},
			body:    []byte(`{"ref":"refs/heads/main","after":"` + sha + `"}`),
			want:    Event{Provider: GitLab, Kind: "push", Ref: "refs/heads/main", Branch: "main", After: sha},
		},
		{
			name:    "gitlab tag push",
			p:       GitLab,
			headers: map[string]string{"X-Gitlab-Event": "Tag Push Hook"},
			body:    gitlabPush("refs/tags/v1.0.0", sha, sha),
			want:    Event{Provider: GitLab, Kind: "push", Ref: "refs/tags/v1.0.0", Tag: true, After: sha},
		},
		{
			name:    "gitlab tag deleted",
			p:       GitLab,
			headers: map[string]string{"X-Gitlab-Event": "Tag Push Hook"},
			body:    gitlabPush("refs/tags/v1.0.0", zeros, nil),
			want:    Event{Provider: GitLab, Kind: "push", Ref: "refs/tags/v1.0.0", Tag: true, Deleted: true, After: zeros},
		},
		{
			name:    "gitlab merge request",
			p:       GitLab,
			headers: map[string]string{"X-Gitlab-Event": "Merge Request Hook"},
			body:    []byte(`{"object_kind":"merge_request"}`),
			want:    Event{Provider: GitLab, Kind: "Merge Request Hook"},
		},
		{
			name:    "gitea push",
			p:       Gitea,
			headers: map[string]string{"X-Gitea-Event": "push", "X-Gitea-Delivery": "g1", "X-GitHub-Delivery": "ignored"},
			body:    giteaPush("refs/heads/main", sha),
			want:    Event{Provider: Gitea, Kind: "push", Delivery: "g1", Ref: "refs/heads/main", Branch: "main", After: sha},
		},
		{
			name:    "gitea branch deleted",
			p:       Gitea,
			headers: map[string]string{"X-Gitea-Event": "push"},
			body:    giteaPush("refs/heads/main", zeros),
			want:    Event{Provider: Gitea, Kind: "push", Ref: "refs/heads/main", Branch: "main", Deleted: true, After: zeros},
		},
		{
			name:    "gitea reads X-Gitea-Event, not X-GitHub-Event",
			p:       Gitea,
			headers: map[string]string{"X-GitHub-Event": "push"},
			body:    giteaPush("refs/heads/main", sha),
			want:    Event{Provider: Gitea},
			wantErr: ErrPayload,
		},
		{
			name:    "gitea push body is an array",
			p:       Gitea,
			headers: map[string]string{"X-Gitea-Event": "push"},
			body:    []byte(`[]`),
			want:    Event{Provider: Gitea, Kind: "push"},
			wantErr: ErrPayload,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			got, err := parse(tc.p, h, tc.body)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("event = %+v\nwant    %+v", got, tc.want)
			}
		})
	}
}

func TestWants(t *testing.T) {
	push := Event{Provider: GitHub, Kind: "push", Ref: "refs/heads/main", Branch: "main", After: "abc"}
	with := func(f func(*Event)) Event { e := push; f(&e); return e }
	cases := []struct {
		name   string
		e      Event
		branch string
		want   bool
	}{
		{"push to the branch", push, "main", true},
		{"push to another branch", push, "master", false},
		{"empty branch", push, "", false},
		{"deletion", with(func(e *Event) { e.Deleted = true }), "main", false},
		{"tag", with(func(e *Event) { e.Ref, e.Branch, e.Tag = "refs/tags/main", "", true }), "main", false},
		{"ping", Event{Provider: GitHub, Kind: "ping"}, "main", false},
		{"other event", with(func(e *Event) { e.Kind = "create" }), "main", false},
		{"not a branch ref", with(func(e *Event) { e.Ref, e.Branch = "refs/pull/1/head", "" }), "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.Wants(tc.branch); got != tc.want {
				t.Errorf("Wants(%q) = %v, want %v (skip: %q)", tc.branch, got, tc.want, tc.e.skip(tc.branch))
			}
		})
	}
}

// FuzzParse feeds random payloads and headers to the parser of verified
// requests: it never panics, fails only with ErrPayload, and its events are
// consistent.
func FuzzParse(f *testing.F) {
	f.Add(uint8(0), "ping", "application/json", payload(f, "ping.json"))
	f.Add(uint8(0), "push", "application/json", payload(f, "push-branch-master.json"))
	f.Add(uint8(0), "push", "application/json", payload(f, "push-tag-deleted.json"))
	f.Add(uint8(0), "push", "application/x-www-form-urlencoded", []byte("payload=%7B%7D"))
	f.Add(uint8(1), "Push Hook", "application/json", gitlabPush("refs/heads/main", "abc", "abc"))
	f.Add(uint8(1), "Tag Push Hook", "application/json", gitlabPush("refs/tags/v1", strings.Repeat("0", 40), nil))
	f.Add(uint8(1), "Push Hook", "", []byte(`{"ref":"refs/heads/","checkout_sha":null}`))
	f.Add(uint8(2), "push", "application/json; charset=utf-8", giteaPush("refs/heads/main", "abc"))
	f.Add(uint8(2), "push", "", []byte(`{"ref":"refs/heads/main","deleted":1}`))
	f.Add(uint8(2), "", "", []byte(``))
	providers := []Provider{GitHub, GitLab, Gitea}
	f.Fuzz(func(t *testing.T, pi uint8, event, contentType string, body []byte) {
		p := providers[int(pi)%len(providers)]
		h := http.Header{}
		h.Set(headers[p].event, event)
		h.Set("Content-Type", contentType)
		e, err := parse(p, h, body)
		if err != nil {
			if !errors.Is(err, ErrPayload) {
				t.Fatalf("err = %v, want ErrPayload", err)
			}
			return
		}
		switch {
		case e.Provider != p || e.Kind == "":
			t.Fatalf("event %+v from %s", e, p)
		case e.Kind == "push" && e.Ref == "":
			t.Fatalf("push without a ref: %+v", e)
		case e.Kind != "push" && (e.Ref != "" || e.Branch != "" || e.Deleted || e.After != ""):
			t.Fatalf("%q event with push fields: %+v", e.Kind, e)
		case e.Branch != "" && (e.Ref != "refs/heads/"+e.Branch || e.Tag):
			t.Fatalf("branch %q from ref %q (tag %v)", e.Branch, e.Ref, e.Tag)
		case e.Wants(e.Branch) && (e.Deleted || e.Tag || e.Branch == ""):
			t.Fatalf("wants a deletion, tag or non-branch: %+v", e)
		}
	})
}
