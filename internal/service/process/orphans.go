package process

import (
	"context"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/service"
	"github.com/slipway-dev/slipway/internal/service/procfs"
)

// markerKeys are the variables that tie a process to its app's root and
// service. The deploy engine puts them in every service's environment.
var markerKeys = []string{"SLIPWAY_ROOT=", "SLIPWAY_APP=", "SLIPWAY_SERVICE="}

// markers returns the marker entries of s.Env, or nil when it has none.
func markers(s service.Spec) []string {
	var out []string
	for _, prefix := range markerKeys {
		for _, kv := range s.Env {
			if strings.HasPrefix(kv, prefix) {
				out = append(out, kv)
			}
		}
	}
	if len(out) != len(markerKeys) {
		return nil
	}
	return out
}

// sweepOrphans stops instances of s that have no pid file: ones started by
// a slipway killed between starting the process and writing its pid file.
// They are the session leaders whose environment carries s's markers.
func sweepOrphans(ctx context.Context, s service.Spec, timeout time.Duration) error {
	want := markers(s)
	if want == nil {
		return nil
	}
	pids, err := procfs.PIDs()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		st, err := procfs.ReadStat(pid)
		if err != nil || st.Gone() || st.SID != pid || !procfs.HasEnv(pid, want) {
			continue
		}
		if err := terminate(ctx, st.PGID, timeout); err != nil {
			return err
		}
	}
	return nil
}

// isOrphanOf reports whether pid, or the leader of its session, carries
// s's markers.
func isOrphanOf(pid int, s service.Spec) bool {
	want := markers(s)
	if want == nil {
		return false
	}
	if procfs.HasEnv(pid, want) {
		return true
	}
	st, err := procfs.ReadStat(pid)
	return err == nil && procfs.HasEnv(st.SID, want)
}
