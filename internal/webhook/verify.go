package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
)

// newMAC makes the HMAC-SHA256 that checks GitHub and Gitea bodies. Tests
// replace it to prove that oversized bodies are refused before any HMAC work.
var newMAC = func(key []byte) hash.Hash { return hmac.New(sha256.New, key) }

// Verify checks that r was sent by p with secret, then parses it.
//
// It refuses, in this order and before any HMAC work: an unknown provider, a
// Content-Length over MaxBody (ErrTooLarge), an empty secret, and a missing
// or malformed signature header, or for GitLab a wrong X-Gitlab-Token
// (ErrSignature). It then reads at most MaxBody+1 bytes of the body
// (ErrTooLarge when there are more), checks the HMAC-SHA256 of the exact
// bytes in constant time (ErrSignature), and parses the event (ErrPayload).
//
// GitHub signs with X-Hub-Signature-256: sha256=<hex>. Gitea signs with
// X-Gitea-Signature: <hex>, or the X-Hub-Signature-256 form when that header
// is absent. GitLab sends the secret itself in X-Gitlab-Token.
func Verify(p Provider, secret []byte, r *http.Request) (Event, error) {
	if !p.valid() {
		return Event{}, fmt.Errorf("webhook: unknown provider %q", string(p))
	}
	if r.ContentLength > MaxBody {
		return Event{}, ErrTooLarge
	}
	if len(secret) == 0 {
		return Event{}, fmt.Errorf("%w: no webhook secret is configured", ErrSignature)
	}
	var want []byte // the HMAC the sender claims; nil for GitLab
	if p == GitLab {
		if err := checkToken(secret, r.Header); err != nil {
			return Event{}, err
		}
	} else {
		sig, err := claimedMAC(p, r.Header)
		if err != nil {
			return Event{}, err
		}
		want = sig
	}
	body, err := readBody(r)
	if err != nil {
		return Event{}, err
	}
	if want != nil {
		mac := newMAC(secret)
		mac.Write(body) // a hash.Hash never returns an error
		if !hmac.Equal(mac.Sum(nil), want) {
			return Event{}, fmt.Errorf("%w: the signature does not match the body; check the webhook secret", ErrSignature)
		}
	}
	return parse(p, r.Header, body)
}

// checkToken compares GitLab's X-Gitlab-Token with secret in constant time.
// Both sides are hashed first so that neither the time nor the answer
// depends on the secret's length.
func checkToken(secret []byte, h http.Header) error {
	token := h.Get("X-Gitlab-Token")
	if token == "" {
		return fmt.Errorf("%w: no X-Gitlab-Token header; set a secret token on the webhook", ErrSignature)
	}
	got := sha256.Sum256([]byte(token))
	want := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return fmt.Errorf("%w: X-Gitlab-Token does not match; check the webhook secret", ErrSignature)
	}
	return nil
}

// claimedMAC decodes the HMAC-SHA256 a GitHub or Gitea request claims.
func claimedMAC(p Provider, h http.Header) ([]byte, error) {
	name, value, prefix := "X-Hub-Signature-256", h.Get("X-Hub-Signature-256"), "sha256="
	if p == Gitea {
		if v := h.Get("X-Gitea-Signature"); v != "" || value == "" {
			name, value, prefix = "X-Gitea-Signature", v, ""
		}
	}
	if value == "" {
		return nil, fmt.Errorf("%w: no %s header; set a secret on the webhook", ErrSignature, name)
	}
	hexSig, ok := strings.CutPrefix(value, prefix)
	if !ok || len(hexSig) != 2*sha256.Size {
		return nil, fmt.Errorf("%w: %s is not %s<64 hex digits>", ErrSignature, name, prefix)
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not %s<64 hex digits>", ErrSignature, name, prefix)
	}
	return sig, nil
}

// readBody reads at most MaxBody bytes of r's body; ErrTooLarge when there
// are more.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 { // at most MaxBody, checked by Verify
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBody+1)); err != nil {
		return nil, fmt.Errorf("read webhook body: %w", err)
	}
	if buf.Len() > MaxBody {
		return nil, ErrTooLarge
	}
	return buf.Bytes(), nil
}
