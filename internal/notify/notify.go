// Package notify tells people about deploys (`notify:` in docs/config.md): a JSON POST
// of a Message to each configured URL on success, failure and rollback.
//
// Sending never fails a deploy: undelivered notifications are logged, with
// the URL's host only, since a webhook URL often embeds its token. A failure
// that repeats identically is sent once, then at most once per ReminderEvery,
// until a success.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for a Notifier.
const (
	DefaultReminderEvery = time.Hour
	DefaultTimeout       = 10 * time.Second // one POST, connect to answer
	defaultRetries       = 2                // after the first attempt
	defaultBackoff       = time.Second      // before the first retry; doubled each time
)

// Notifier posts Messages to a fixed list of URLs. It is safe for
// concurrent use; a nil *Notifier, or one without URLs, sends nothing.
type Notifier struct {
	// ReminderEvery is how often an identical, repeating failure is sent
	// again; DefaultReminderEvery when zero.
	ReminderEvery time.Duration
	// Now is the clock used for dedupe and for a Message without a Time;
	// time.Now when nil.
	Now func() time.Time

	targets []target
	log     *slog.Logger
	client  *http.Client
	host    string // this machine, for a Message without a Host

	timeout time.Duration
	retries int
	backoff time.Duration

	mu       sync.Mutex
	failures map[failureKey]sentFailure
}

// target is one URL to post to. Only host is ever logged.
type target struct {
	url  string
	host string
}

// New returns a Notifier for urls, logging to logger (nothing when nil).
// A URL that is not an absolute http(s) URL is skipped with a warning that
// gives its position in the list, not its text.
func New(urls []string, logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		log:      logger.With("component", "notify"),
		client:   newClient(),
		timeout:  DefaultTimeout,
		retries:  defaultRetries,
		backoff:  defaultBackoff,
		failures: map[failureKey]sentFailure{},
	}
	n.host, _ = os.Hostname()
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			n.log.Warn("notify URL skipped: not an absolute http(s) URL", "index", i)
			continue
		}
		n.targets = append(n.targets, target{url: raw, host: u.Host})
	}
	return n
}

// Send posts m to every URL at once and returns when every POST is done or
// ctx ends. Each POST gets DefaultTimeout and two retries, with backoff, on
// a network error, a 5xx or a 429; so Send takes at most about 33s. It never
// fails: what was not delivered is logged.
//
// A Message without Time, Host or Text gets the current time, this
// machine's hostname and Describe(m). A deploy that is being interrupted
// should pass a context that outlives it, e.g.
// context.WithTimeout(context.WithoutCancel(ctx), time.Minute).
func (n *Notifier) Send(ctx context.Context, m Message) {
	if n == nil || len(n.targets) == 0 {
		return
	}
	now := n.now()
	if m.Time.IsZero() {
		m.Time = now
	}
	if m.Host == "" {
		m.Host = n.host
	}
	if m.Text == "" {
		m.Text = Describe(m)
	}
	t, ok := n.admit(m, now)
	if !ok {
		n.log.Info("notification held back: the same failure was sent less than ReminderEvery ago",
			"outcome", m.Outcome, "commit", short(m.Commit), "deploy_id", m.DeployID, "reminder_every", n.reminderEvery())
		return
	}
	m.Text += t.reminder()
	body, err := json.Marshal(m)
	if err != nil { // cannot happen: Message holds strings, numbers and a time
		n.log.Error("notification not encoded", "deploy_id", m.DeployID, "err", err)
		return
	}
	var wg sync.WaitGroup
	var delivered atomic.Bool
	for _, tg := range n.targets {
		wg.Go(func() {
			if n.post(ctx, tg, body, m) {
				delivered.Store(true)
			}
		})
	}
	wg.Wait()
	if !delivered.Load() {
		n.takeBack(t)
	}
}

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// post delivers body to one target, retrying what may pass on a second try,
// and reports whether it was accepted.
func (n *Notifier) post(ctx context.Context, t target, body []byte, m Message) bool {
	var err error
	attempts := 0
	for attempts <= n.retries {
		if attempts > 0 && !sleep(ctx, n.backoff<<(attempts-1)) {
			break
		}
		attempts++
		var retry bool
		if retry, err = n.postOnce(ctx, t, body); err == nil {
			n.log.Debug("notification sent", "host", t.host, "outcome", m.Outcome, "deploy_id", m.DeployID, "attempts", attempts)
			return true
		}
		if !retry || ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("gave up: %w", context.Cause(ctx))
	}
	n.log.Warn("notification not delivered", "host", t.host, "outcome", m.Outcome,
		"deploy_id", m.DeployID, "attempts", attempts, "err", err.Error())
	return false
}

// postOnce makes one POST. Its error never holds the URL, only the host;
// retry says whether another attempt may succeed.
func (n *Notifier) postOnce(ctx context.Context, t target, body []byte) (retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("the URL cannot make a request")
	}
	req.Header.Set("User-Agent", "slipway")
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error's text holds the full URL
		}
		switch {
		case errors.Is(err, errRedirect):
			return false, err
		case ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded):
			return true, fmt.Errorf("no answer within %s", n.timeout)
		}
		return true, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("answered %s", resp.Status)
	default:
		return false, fmt.Errorf("answered %s", resp.Status)
	}
}

// sleep waits d, or less if ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errRedirect is a redirect the client refused to follow.
var errRedirect = errors.New("redirect not followed")

// newClient is the HTTP client for notifications: redirects only on the
// same host and still as a POST, and no environment proxy for loopback.
func newClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = proxy
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			first := via[0]
			switch {
			case len(via) >= 5:
				return fmt.Errorf("%w: more than %d", errRedirect, len(via))
			case !strings.EqualFold(req.URL.Host, first.URL.Host):
				return fmt.Errorf("%w: it leads to another host, %s", errRedirect, req.URL.Host)
			case first.URL.Scheme == "https" && req.URL.Scheme != "https":
				return fmt.Errorf("%w: it leaves https", errRedirect)
			case req.Method != first.Method:
				return fmt.Errorf("%w: it turns the %s into a %s (use 307 or 308)", errRedirect, first.Method, req.Method)
			}
			return nil
		},
	}
}

// proxy uses the environment's proxy (HTTPS_PROXY, NO_PROXY…) except for
// loopback addresses, which are always reached directly.
func proxy(req *http.Request) (*url.URL, error) {
	if isLoopback(req.URL.Hostname()) {
		return nil, nil
	}
	return http.ProxyFromEnvironment(req)
}

func isLoopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
