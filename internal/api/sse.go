package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/events"
)

// subscribeIf subscribes to events before a job is queued, so that a
// follower misses none of its steps.
func (s *Server) subscribeIf(follow bool) *events.Sub {
	if !follow {
		return nil
	}
	return s.Broker.Subscribe(1024)
}

// sseStart prepares a server-sent event stream: no write deadline, no buffering.
func sseStart(w http.ResponseWriter) (*http.ResponseController, bool) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		return rc, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return rc, rc.Flush() == nil
}

func sseSend(w http.ResponseWriter, rc *http.ResponseController, event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	return rc.Flush()
}

// feed serves every step event, and each job's end: the recent ones as
// JSON, or with ?follow=1 a live server-sent event stream ("step" and
// "done" events).
func (s *Server) feed(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("follow") != "1" {
		writeJSON(w, http.StatusOK, s.Broker.Recent())
		return
	}
	sub := s.Broker.Subscribe(1024)
	defer s.Broker.Unsubscribe(sub)
	rc, ok := sseStart(w)
	if !ok {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, open := <-sub.C:
			if !open {
				_ = sseSend(w, rc, "overflow", map[string]string{"error": "subscriber fell behind; reconnect"})
				return
			}
			name := "step"
			if ev.Phase == deploy.PhaseDone {
				name = "done"
			}
			if sseSend(w, rc, name, ev) != nil {
				return
			}
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// stream follows job id: its step events, then its result. Only this
// goroutine writes to w.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sub *events.Sub, id int64) {
	defer s.Broker.Unsubscribe(sub)
	rc, ok := sseStart(w)
	if !ok {
		return
	}
	_ = sseSend(w, rc, "accepted", map[string]int64{"id": id})
	results := make(chan deploy.Summary, 1)
	go func() {
		if sum, ok := s.Backend.Wait(r.Context(), id); ok {
			results <- sum
		}
	}()
	events := sub.C
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, open := <-events:
			if !open {
				events = nil // cut off: the result still comes
				continue
			}
			if ev.DeployID == id && ev.Phase != deploy.PhaseDone && sseSend(w, rc, "step", ev) != nil {
				return
			}
		case sum := <-results:
			// The job's last events were published before it finished.
			for drained := false; !drained && events != nil; {
				select {
				case ev, open := <-events:
					if !open {
						drained = true
					} else if ev.DeployID == id && ev.Phase != deploy.PhaseDone {
						_ = sseSend(w, rc, "step", ev)
					}
				default:
					drained = true
				}
			}
			_ = sseSend(w, rc, "result", sum)
			return
		}
	}
}
