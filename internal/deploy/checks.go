package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/slipway-dev/slipway/internal/check"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/run"
)

func (e *Engine) healthRequest(h *config.Health) check.Request {
	return e.retarget(check.Request{URL: h.URL, ExpectStatus: h.ExpectStatus})
}

func (e *Engine) checkWait(ctx context.Context, h *config.Health, alive func() error) error {
	r := e.healthRequest(h)
	r.FailAfter = h.FailAfter
	return check.WaitHealthy(ctx, r, h.Timeout.D(), h.Interval.D(), alive)
}

func (e *Engine) checkOnce(ctx context.Context, h *config.Health) error {
	r := e.healthRequest(h)
	r.Timeout = max(h.Interval.D()*5, 2e9)
	return check.Do(ctx, r)
}

// retarget sends a check aimed at a proxied service's public address to
// the instance startAll readied for it, which takes no traffic yet, with
// the Host header the request had: a release proves itself before any
// user reaches it. Other checks go where they are aimed.
func (e *Engine) retarget(r check.Request) check.Request {
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme != "http" {
		return r
	}
	for _, name := range e.Cfg.ServiceNames() {
		inst, ok := e.readied(name)
		if !ok || !aimsAt(u, e.Cfg.Services[name].Proxy.Listen) {
			continue
		}
		headers := map[string]string{"Host": u.Host}
		for k, v := range r.Headers {
			headers[k] = v // a Host of the check's own wins
		}
		u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(inst.Port))
		r.URL, r.Headers = u.String(), headers
		return r
	}
	return r
}

// aimsAt reports whether u is addressed to a listener on listen: the same
// port, on the listen host, or on loopback when it listens on every
// address.
func aimsAt(u *url.URL, listen string) bool {
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if port != lp {
		return false
	}
	h := u.Hostname()
	switch {
	case h == lh:
		return true
	case lh == "" || lh == "0.0.0.0" || lh == "::":
		return true
	}
	ip := net.ParseIP(h)
	lip := net.ParseIP(lh)
	return (h == "localhost" || ip != nil && ip.IsLoopback()) && lip != nil && lip.IsLoopback()
}

// smoke runs every smoke check against the new version; all must pass.
func (e *Engine) smoke(ctx context.Context, v vars, out io.Writer, cred *syscall.Credential) (string, error) {
	if len(e.Cfg.Smoke) == 0 {
		return "no smoke checks configured", nil
	}
	if why := e.checksSkipped(); why != "" {
		return "smoke checks " + why, nil
	}
	for i, c := range e.Cfg.Smoke {
		name := c.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		var err error
		if c.Run != "" {
			err = run.Run(ctx, run.Cmd{
				Argv:       run.Argv(c.Run),
				Dir:        filepath.Join(v.rel.Dir, c.Dir),
				Env:        append(e.env(c.EnvFile, v), e.instanceEnv()...),
				Timeout:    c.Timeout.D(),
				Output:     out,
				Credential: cred,
				Display:    c.Run,
				Track:      e.tracker(),
			})
		} else {
			err = check.Do(ctx, e.retarget(check.Request{
				Method: c.Method, URL: c.URL, Headers: c.Headers,
				ExpectStatus: c.ExpectStatus, ExpectBody: c.ExpectBody, Timeout: c.Timeout.D(),
			}))
		}
		if err != nil {
			return "", fmt.Errorf("smoke check %q: %w", name, err)
		}
		fmt.Fprintf(out, "smoke check %q passed\n", name)
	}
	return fmt.Sprintf("%d checks passed", len(e.Cfg.Smoke)), nil
}

// instanceEnv tells a smoke command where the readied instances of proxied
// services listen: SLIPWAY_INSTANCE_<SERVICE>=127.0.0.1:PORT (the name in
// capitals, other characters than letters and digits as _).
func (e *Engine) instanceEnv() []string {
	var env []string
	for _, name := range e.Cfg.ServiceNames() {
		if inst, ok := e.readied(name); ok {
			key := strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' {
					return r - 'a' + 'A'
				}
				if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
					return r
				}
				return '_'
			}, name)
			env = append(env, "SLIPWAY_INSTANCE_"+key+"=127.0.0.1:"+strconv.Itoa(inst.Port))
		}
	}
	return env
}

func readFile(dir, rel string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, rel))
	return string(b), err
}
