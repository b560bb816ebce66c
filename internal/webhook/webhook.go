// Package webhook verifies and parses push webhooks from GitHub, GitLab and
// Gitea.
//
// A verified push says one thing only: "check the branch now". Nothing here
// deploys, and no payload value is ever handed to a shell; the sha a payload
// names (Event.After) is informational, because the agent resolves the branch
// tip from the remote itself.
//
// Signatures cover the body, not the headers, so the delivery id a Replay
// remembers only filters redeliveries and accidental repeats, not a
// determined replay with a fresh id. That is acceptable because a replayed
// push can at most wake a check of a branch the agent already watches.
package webhook

import (
	"errors"
	"fmt"
)

// Provider names a git host that sends webhooks.
type Provider string

// The supported providers; each is also the last element of its route,
// /webhook/<provider>.
const (
	GitHub Provider = "github"
	GitLab Provider = "gitlab"
	Gitea  Provider = "gitea"
)

func (p Provider) valid() bool {
	return p == GitHub || p == GitLab || p == Gitea
}

// MaxBody is the largest request body Verify reads, in bytes.
const MaxBody = 1 << 20

var (
	// ErrSignature means the signature or token is missing or wrong, or no
	// secret is configured; the caller answers 401.
	ErrSignature = errors.New("webhook: missing or invalid signature")
	// ErrTooLarge means the body is over MaxBody; the caller answers 413.
	ErrTooLarge = errors.New("webhook: body over 1 MiB")
	// ErrPayload means a signed request could not be understood (no event
	// header, or a push whose JSON does not parse); the caller answers 400.
	ErrPayload = errors.New("webhook: unparseable payload")
)

// Event is what a verified request says.
type Event struct {
	Provider Provider
	// Kind is "push", "ping", or the provider's event name for anything else
	// (GitLab's "Push Hook" and "Tag Push Hook" are both "push").
	Kind string
	// Delivery is the provider's delivery id: X-GitHub-Delivery,
	// X-Gitea-Delivery or X-Gitlab-Event-UUID; "" if none was sent.
	Delivery string
	// Ref is the pushed ref, e.g. "refs/heads/main" (push only).
	Ref string
	// Branch is "main" when Ref is refs/heads/main, else "".
	Branch string
	// Tag is true when a tag was pushed or deleted.
	Tag bool
	// Deleted is true when the push deleted the branch or tag.
	Deleted bool
	// After is the sha the ref now points at, as the payload claims. It is
	// informational only: callers must never deploy it.
	After string
}

// Wants reports whether e should wake a deploy check of branch: a push to
// refs/heads/<branch> that is not a deletion.
func (e Event) Wants(branch string) bool {
	return e.skip(branch) == ""
}

// skip says why e does not want a check of branch, or "" when it does.
func (e Event) skip(branch string) string {
	switch {
	case e.Kind != "push":
		return fmt.Sprintf("event %q is not a push", e.Kind)
	case e.Deleted && e.Tag:
		return fmt.Sprintf("tag %q deleted", e.Ref)
	case e.Deleted:
		return fmt.Sprintf("%q deleted", e.Ref)
	case e.Tag:
		return fmt.Sprintf("tag push %q", e.Ref)
	case e.Branch == "":
		return fmt.Sprintf("push to %q is not a branch", e.Ref)
	case e.Branch != branch:
		return fmt.Sprintf("push to branch %q, watching %q", e.Branch, branch)
	}
	return ""
}
