// Package check proves a version up: the health check polled until it
// passes, and the HTTP smoke checks.
package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Request is one HTTP expectation.
type Request struct {
	Method       string
	URL          string
	Headers      map[string]string
	ExpectStatus int
	ExpectBody   string // substring; "" = any
	Timeout      time.Duration
	// FailAfter, when above 0, ends WaitHealthy at once after that many
	// definitive refusals in a row (StatusError.Definitive), rather than
	// at its timeout.
	FailAfter int
}

// StatusError is an answer with another status than the expected one.
type StatusError struct {
	Method, URL string
	Got, Want   int
	Body        string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: got status %d, want %d; body: %s", e.Method, e.URL, e.Got, e.Want, e.Body)
}

// Definitive says whether the answer refuses rather than says "not yet":
// any status but 429, 502, 503 and 504, which an app warming up, or a
// proxy in front of one, gives.
func (e *StatusError) Definitive() bool {
	switch e.Got {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return false
	}
	return true
}

var client = &http.Client{
	// Never follow a redirect to somewhere else: the answer is the check's.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
	},
}

// Do performs r once and returns nil when the status (and body) match.
func Do(ctx context.Context, r Request) error {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, r.URL, err)
	}
	for k, v := range r.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v // net/http ignores a Host header field
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, r.URL, unwrapURL(err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	want := r.ExpectStatus
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return &StatusError{Method: method, URL: r.URL, Got: resp.StatusCode, Want: want, Body: snippet(body)}
	}
	if r.ExpectBody != "" && !strings.Contains(string(body), r.ExpectBody) {
		return fmt.Errorf("%s %s: body does not contain %q; body: %s", method, r.URL, r.ExpectBody, snippet(body))
	}
	return nil
}

// WaitHealthy polls r until it passes or timeout ends: every 25 ms for
// the first second, then doubling up to interval. alive,
// when set, is asked between polls and stops the wait early when the
// service is gone (no use waiting for a process that exited).
func WaitHealthy(ctx context.Context, r Request, timeout, interval time.Duration, alive func() error) error {
	if interval <= 0 {
		interval = time.Second
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if r.Timeout <= 0 || r.Timeout > interval*5 {
		r.Timeout = max(interval*5, 2*time.Second)
	}
	var last error
	refused := 0 // definitive refusals in a row
	// Poll every 5 ms for the first 200 ms and every 25 ms up to a second
	// (a fresh process usually binds its port within it, and every poll
	// saved is deploy time), then back off to interval.
	start := time.Now()
	wait := min(5*time.Millisecond, interval)
	for {
		err := Do(ctx, r)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			// A poll cut short by the overall deadline says less than the
			// answer before it.
			last = err
		}
		var se *StatusError
		if errors.As(err, &se) && se.Definitive() {
			refused++
			if r.FailAfter > 0 && refused >= r.FailAfter {
				return fmt.Errorf("refused %d times in a row (health.fail_after), after %s: %w", refused, time.Since(start).Round(time.Millisecond), err)
			}
		} else {
			refused = 0
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			if parent := context.Cause(ctx); parent != nil && !errors.Is(parent, context.DeadlineExceeded) {
				return parent
			}
			return fmt.Errorf("not healthy after %s: %w", timeout, last)
		case <-time.After(wait):
		}
		switch elapsed := time.Since(start); {
		case elapsed > time.Second:
			wait = min(wait*2, interval)
		case elapsed > 200*time.Millisecond:
			wait = min(25*time.Millisecond, interval)
		}
	}
}

func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty)"
	}
	return s
}
