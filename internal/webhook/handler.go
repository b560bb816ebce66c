package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// The results a handler passes to its observe callback, one per request.
const (
	ResultAccepted         = "accepted"           // a wanted push; onPush was called
	ResultIgnored          = "ignored"            // another event, branch or tag, or a deletion
	ResultPing             = "ping"               // the host testing the hook
	ResultDuplicate        = "duplicate"          // a delivery id seen before
	ResultUnauthorized     = "unauthorized"       // missing or bad signature or token
	ResultTooLarge         = "too_large"          // body over MaxBody
	ResultBadRequest       = "bad_request"        // signed but unparseable, or unreadable
	ResultMethodNotAllowed = "method_not_allowed" // not a POST
)

type handler struct {
	provider Provider
	secret   []byte
	branch   string
	replay   *Replay
	onPush   func(Event)
	observe  func(Provider, string)
}

// NewHandler returns the http.Handler of one provider's webhook route.
//
// It answers, with a JSON body: 405 to anything but POST; 413, 401 or 400
// when Verify returns ErrTooLarge, ErrSignature or another error; 200
// {"ignored":"duplicate delivery"} to a delivery id replay has seen (nil
// replay: no check); 200 {"ok":true,"event":"ping"} to a ping; 202
// {"ignored":"<reason>"} to any other event and to pushes that are not
// Wanted for branch; and 202 {"accepted":true} to a wanted push, after
// calling onPush with it. onPush runs on the request's goroutine and must
// return quickly: it should only wake the agent, never deploy.
//
// Every request's result (one of the Result constants) is passed to observe,
// if not nil, for metrics and logs. NewHandler panics if p is not a known
// provider. An empty secret makes every request unauthorized.
func NewHandler(p Provider, secret []byte, branch string, replay *Replay, onPush func(Event), observe func(p Provider, result string)) http.Handler {
	if !p.valid() {
		panic(fmt.Sprintf("webhook: unknown provider %q", string(p)))
	}
	if onPush == nil {
		onPush = func(Event) {}
	}
	if observe == nil {
		observe = func(Provider, string) {}
	}
	return &handler{
		provider: p,
		secret:   bytes.Clone(secret),
		branch:   branch,
		replay:   replay,
		onPush:   onPush,
		observe:  observe,
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.answer(w, http.StatusMethodNotAllowed, ResultMethodNotAllowed, map[string]any{"error": "webhooks are POSTed"})
		return
	}
	e, err := Verify(h.provider, h.secret, r)
	switch {
	case errors.Is(err, ErrTooLarge):
		h.answer(w, http.StatusRequestEntityTooLarge, ResultTooLarge, map[string]any{"error": err.Error()})
		return
	case errors.Is(err, ErrSignature):
		h.answer(w, http.StatusUnauthorized, ResultUnauthorized, map[string]any{"error": err.Error()})
		return
	case err != nil:
		h.answer(w, http.StatusBadRequest, ResultBadRequest, map[string]any{"error": err.Error()})
		return
	}
	if h.replay.Seen(e.Delivery) {
		h.answer(w, http.StatusOK, ResultDuplicate, map[string]any{"ignored": "duplicate delivery"})
		return
	}
	if e.Kind == "ping" {
		h.answer(w, http.StatusOK, ResultPing, map[string]any{"ok": true, "event": "ping"})
		return
	}
	if reason := e.skip(h.branch); reason != "" {
		h.answer(w, http.StatusAccepted, ResultIgnored, map[string]any{"ignored": reason})
		return
	}
	h.onPush(e)
	h.answer(w, http.StatusAccepted, ResultAccepted, map[string]any{"accepted": true})
}

// answer observes result and writes body as JSON with status. A failed write
// means the sender has gone; there is no one left to tell.
func (h *handler) answer(w http.ResponseWriter, status int, result string, body map[string]any) {
	h.observe(h.provider, result)
	b, err := json.Marshal(body)
	if err != nil { // maps of strings and bools always marshal
		b = []byte(`{"error":"internal error"}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
