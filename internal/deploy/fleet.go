package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/slipway-dev/slipway/internal/fsutil"
)

// FleetRecord is what the operator's last rollout left on this host
// (run/fleet.json): the host is in a fleet, and its deploys come from
// `slipway fleet deploy`. The agent and the timer then leave new branch
// tips alone, so that no host drifts from the rest.
type FleetRecord struct {
	Rollout int64     `json:"rollout"`
	Commit  string    `json:"commit"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
}

func (r *FleetRecord) String() string {
	return fmt.Sprintf("fleet rollout %d (%.7s, by %s)", r.Rollout, r.Commit, r.By)
}

// Fleet returns the fleet record, or nil when the host is on its own.
func (e *Engine) Fleet() *FleetRecord {
	b, err := os.ReadFile(e.Layout.FleetFile())
	if err != nil {
		return nil
	}
	var r FleetRecord
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	return &r
}

// RecordFleet writes the fleet record (nil removes it: the host leaves
// the fleet).
func (e *Engine) RecordFleet(r *FleetRecord) error {
	if r == nil {
		err := os.Remove(e.Layout.FleetFile())
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return fsutil.WriteFile(e.Layout.FleetFile(), append(b, '\n'), 0o644)
}
