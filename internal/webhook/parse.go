package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// headers names, per provider, the headers that carry the event name and
// the delivery id.
var headers = map[Provider]struct{ event, delivery string }{
	GitHub: {"X-GitHub-Event", "X-GitHub-Delivery"},
	Gitea:  {"X-Gitea-Event", "X-Gitea-Delivery"},
	GitLab: {"X-Gitlab-Event", "X-Gitlab-Event-UUID"},
}

// pushBody holds the few fields of a push payload that matter. GitHub and
// Gitea send ref, after and (GitHub) deleted; GitLab sends ref, after and
// checkout_sha, which is null when the ref was deleted.
type pushBody struct {
	Ref         string          `json:"ref"`
	After       string          `json:"after"`
	Deleted     bool            `json:"deleted"`
	CheckoutSHA json.RawMessage `json:"checkout_sha"`
}

// parse reads the event of an already verified request. Only pushes have
// their body decoded.
func parse(p Provider, h http.Header, body []byte) (Event, error) {
	names := headers[p]
	e := Event{Provider: p, Delivery: h.Get(names.delivery)}
	name := h.Get(names.event)
	if name == "" {
		return e, fmt.Errorf("%w: no %s header", ErrPayload, names.event)
	}
	e.Kind = name
	if p == GitLab {
		switch name {
		case "Push Hook":
			e.Kind = "push"
		case "Tag Push Hook":
			e.Kind, e.Tag = "push", true
		}
	}
	if e.Kind != "push" {
		return e, nil
	}

	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		return e, fmt.Errorf("%w: form-encoded payloads are not supported; set the webhook's content type to application/json", ErrPayload)
	}
	var b pushBody
	if err := json.Unmarshal(body, &b); err != nil {
		return e, fmt.Errorf("%w: push: %w", ErrPayload, err)
	}
	if b.Ref == "" {
		return e, fmt.Errorf("%w: push without a ref", ErrPayload)
	}
	e.Ref, e.After = b.Ref, b.After
	e.Tag = e.Tag || strings.HasPrefix(b.Ref, "refs/tags/")
	if branch, ok := strings.CutPrefix(b.Ref, "refs/heads/"); ok && !e.Tag {
		e.Branch = branch
	}
	e.Deleted = b.Deleted || zeroSHA(b.After) ||
		(p == GitLab && bytes.Equal(b.CheckoutSHA, []byte("null")))
	return e, nil
}

// zeroSHA reports whether sha is the all-zeros object id that git hosts send
// as "after" when a ref is deleted (40 digits for SHA-1, 64 for SHA-256).
func zeroSHA(sha string) bool {
	return sha != "" && strings.Trim(sha, "0") == ""
}
