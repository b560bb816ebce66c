package deploy

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
)

// settleEvery is how often the settle window looks when there is no
// health check to take its interval from.
const settleEvery = 200 * time.Millisecond

// settleWindow is how long a release must stay up and healthy, once its
// checks passed, before it is marked safe.
func (e *Engine) settleWindow() time.Duration {
	if h := e.Cfg.Health; h != nil {
		return h.Settle.D()
	}
	return config.DefaultSettle.D()
}

// settle is the settle step: for the whole window every service must keep
// running, none may be restarted by its manager, and the health check must
// keep passing. A release that dies right after its checks is not safe.
func (e *Engine) settle(ctx context.Context, v vars, cred *syscall.Credential) (string, error) {
	window := e.settleWindow()
	if window <= 0 {
		return "no settle window (health.settle: 0)", nil
	}
	every := settleEvery
	if h := e.Cfg.Health; h != nil {
		every = h.Interval.D()
	}
	every = min(every, window)
	base, err := e.restarts(ctx, v)
	if err != nil {
		return "", err
	}
	clock := e.clock()
	t0 := clock.Now()
	deadline := t0.Add(window)
	for {
		into := clock.Now().Sub(t0).Round(time.Millisecond)
		if err := e.alive(ctx, v, cred); err != nil {
			return "", fmt.Errorf("%s into the settle window: %w", into, err)
		}
		now, err := e.restarts(ctx, v)
		if err != nil {
			return "", err
		}
		for name, n := range now {
			if n > base[name] {
				return "", fmt.Errorf("%s into the settle window: service %s exited and was restarted %d time(s)", into, name, n-base[name])
			}
		}
		if h := e.Cfg.Health; h != nil && e.checksSkipped() == "" {
			if err := e.checkOnce(ctx, h); err != nil {
				return "", fmt.Errorf("%s into the settle window: health check: %w", into, err)
			}
		}
		left := deadline.Sub(clock.Now())
		if left <= 0 {
			return fmt.Sprintf("every service up and healthy for %s", window), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-clock.After(min(every, left)):
		}
	}
}

// restarts returns how often each service was restarted by its manager.
func (e *Engine) restarts(ctx context.Context, v vars) (map[string]int, error) {
	out := map[string]int{}
	for _, spec := range e.specs(ctx, v, nil) {
		st, err := e.Services.Status(ctx, spec)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", spec.Name, err)
		}
		out[spec.Name] = st.Restarts
	}
	return out, nil
}
