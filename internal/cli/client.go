package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/release"
)

// agentClient talks to a running agent over its control socket.
type agentClient struct {
	http *http.Client
}

// dialAgent returns a client when an agent listens on the app's socket.
func dialAgent(root string) *agentClient {
	sock := release.Layout{Root: root}.SocketPath()
	c, err := net.DialTimeout("unix", sock, 500*time.Millisecond)
	if err != nil {
		return nil
	}
	_ = c.Close()
	return &agentClient{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// remoteExit is a result the agent reported, with its exit code.
type remoteExit struct {
	code int
	sum  deploy.Summary
}

func (r remoteExit) Error() string {
	if r.sum.Error != "" {
		return r.sum.Error
	}
	return r.sum.Message
}

func asRemote(err error, r *remoteExit) bool { return errors.As(err, r) }

// get fetches path as JSON into v.
func (c *agentClient) get(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// follow posts body to path and streams the job's step events to observe
// until its result arrives.
func (c *agentClient) follow(ctx context.Context, path string, body any, observe func(deploy.Event)) (deploy.Summary, error) {
	var sum deploy.Summary
	data, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+path+"?follow=1", bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Slipway-Actor", actor())
	resp, err := c.http.Do(req)
	if err != nil {
		return sum, fmt.Errorf("agent: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		code := ExitFailedCode
		switch resp.StatusCode {
		case http.StatusConflict:
			code = ExitLockedCode
		case http.StatusBadRequest:
			code = ExitUsageCode
		}
		sum = deploy.Summary{Error: e.Error, ExitCode: code}
		return sum, remoteExit{code: code, sum: sum}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			payload := []byte(strings.TrimPrefix(line, "data: "))
			switch event {
			case "step":
				var ev deploy.Event
				if json.Unmarshal(payload, &ev) == nil && observe != nil {
					observe(ev)
				}
			case "result":
				if err := json.Unmarshal(payload, &sum); err != nil {
					return sum, fmt.Errorf("agent: bad result: %w", err)
				}
				if sum.ExitCode != 0 {
					return sum, remoteExit{code: sum.ExitCode, sum: sum}
				}
				return sum, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("agent: stream: %w", err)
	}
	return sum, errors.New("agent: the stream ended before the result (the agent may have stopped); `slipway status` shows what happened")
}
