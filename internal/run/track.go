package run

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/service/procfs"
)

// TrackEnv is the variable that marks every process of a tracked command.
// Children inherit it, even one that leaves the command's process group
// or session (setsid), so it finds them all.
const TrackEnv = "SLIPWAY_COMMAND_ID"

// Tracker records each command it runs in a file of Dir while the command
// runs: its id (the value of TrackEnv in its environment) and its process
// group. A command's processes end with it. When slipway itself is killed
// mid-command, the records stay, and Sweep ends what is left.
//
// The records are written without fsync: they only matter while processes
// run, and a power loss ends those too.
type Tracker struct {
	Dir string
}

// trackRecord is one running command, <Dir>/<id>.json.
type trackRecord struct {
	ID      string    `json:"id"`
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	// PGID is the command's process group and StartTicks its leader's
	// start time (0 until it has started): a group number reused by a
	// later process has later start times.
	PGID       int    `json:"pgid,omitempty"`
	StartTicks uint64 `json:"start_ticks,omitempty"`
}

func (t *Tracker) path(id string) string { return filepath.Join(t.Dir, id+".json") }

// begin records a command about to start and returns its id.
func (t *Tracker) begin(display string) (string, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return "", fmt.Errorf("record command: %w", err)
	}
	return id, t.write(trackRecord{ID: id, Command: display, Started: time.Now().UTC()})
}

// started adds the process group of the started command to its record.
func (t *Tracker) started(r *trackRecord, pid int) error {
	r.PGID = pid
	if st, err := procfs.ReadStat(pid); err == nil {
		r.StartTicks = st.StartTicks
	}
	return t.write(*r)
}

func (t *Tracker) write(r trackRecord) error {
	b, _ := json.Marshal(r)
	if err := os.WriteFile(t.path(r.ID), b, 0o600); err != nil {
		return fmt.Errorf("record command: %w", err)
	}
	return nil
}

// finish ends whatever is left of a command that exited, then drops its
// record.
func (t *Tracker) finish(r trackRecord) {
	if r.PGID > 0 {
		// Its group first, with one call: the leader has just been reaped,
		// and no new process takes a group's number while members remain.
		_ = syscall.Kill(-r.PGID, syscall.SIGKILL)
		// Then anything that left the group, by its mark.
		_, _ = end([]trackRecord{r}, false)
	}
	_ = os.Remove(t.path(r.ID))
}

// Sweep ends every process of the commands recorded in Dir (ones a killed
// slipway left running) and removes their records. It returns one line per
// command that still had processes. Run it only where no tracked command
// can be running: under the deploy lock, before starting any.
func (t *Tracker) Sweep() ([]string, error) {
	ents, err := os.ReadDir(t.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list recorded commands: %w", err)
	}
	var recs []trackRecord
	var files []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(t.Dir, e.Name())
		files = append(files, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read recorded command: %w", err)
		}
		var r trackRecord
		if json.Unmarshal(b, &r) != nil || r.ID == "" {
			// Cut short as it was written: its name is its id.
			r = trackRecord{ID: strings.TrimSuffix(e.Name(), ".json")}
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	killed, err := end(recs, true)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range recs {
		if n := killed[r.ID]; n > 0 {
			out = append(out, fmt.Sprintf("ended %d process(es) left by `%s` (started %s)", n, r.Command, r.Started.Format(time.RFC3339)))
		}
	}
	for _, p := range files {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return out, fmt.Errorf("remove recorded command: %w", err)
		}
	}
	return out, nil
}

// sweepRounds bounds how often end looks again for processes that were
// being forked while it killed their parents.
const sweepRounds = 50

// end kills, with SIGKILL, every process that carries one of the records'
// ids in its environment or, with groups, is in one of their process groups
// (started no earlier than its leader), until a look finds none. It counts
// the killed processes per id.
func end(recs []trackRecord, groups bool) (map[string]int, error) {
	marks := make(map[string]string, len(recs)) // "KEY=id" -> id
	for _, r := range recs {
		marks[TrackEnv+"="+r.ID] = r.ID
	}
	killed := map[string]int{}
	self := os.Getpid()
	for round := 0; round < sweepRounds; round++ {
		pids, err := procfs.PIDs()
		if err != nil {
			return killed, err
		}
		found := 0
		for _, pid := range pids {
			if pid == self {
				continue
			}
			id, ok := marked(pid, marks)
			if !ok && groups {
				id, ok = inGroup(pid, recs)
			}
			if !ok {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed[id]++
				found++
			}
		}
		if found == 0 {
			return killed, nil
		}
		// Give the kernel a moment to tear them down, and any child forked
		// meanwhile a moment to show up.
		time.Sleep(time.Millisecond)
	}
	return killed, fmt.Errorf("processes of recorded commands kept appearing after %d rounds of SIGKILL", sweepRounds)
}

// marked returns the id of the record whose mark pid's environment holds.
// (An environment is much cheaper to read than a stat line.)
func marked(pid int, marks map[string]string) (string, bool) {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil || !bytes.Contains(env, []byte(TrackEnv+"=")) {
		return "", false
	}
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if id, ok := marks[string(kv)]; ok {
			return id, ok
		}
	}
	return "", false
}

// inGroup returns the id of the record whose process group pid is in.
func inGroup(pid int, recs []trackRecord) (string, bool) {
	st, err := procfs.ReadStat(pid)
	if err != nil || st.Gone() {
		return "", false
	}
	for _, r := range recs {
		if r.PGID > 0 && st.PGID == r.PGID && st.StartTicks >= r.StartTicks {
			return r.ID, true
		}
	}
	return "", false
}

// tracking is one tracked command from its start to its end.
type tracking struct {
	t   *Tracker
	rec trackRecord
}

// track records c before it starts and returns its environment with the
// mark; nil tracking when c is not tracked.
func (c Cmd) track(env []string) ([]string, *tracking, error) {
	if c.Track == nil {
		return env, nil, nil
	}
	id, err := c.Track.begin(c.display())
	if err != nil {
		return nil, nil, err
	}
	tr := &tracking{t: c.Track, rec: trackRecord{ID: id, Command: c.display(), Started: time.Now().UTC()}}
	return append(append([]string(nil), env...), TrackEnv+"="+id), tr, nil
}

func (tr *tracking) started(pid int) {
	if tr != nil {
		_ = tr.t.started(&tr.rec, pid)
	}
}

func (tr *tracking) done() {
	if tr != nil {
		tr.t.finish(tr.rec)
	}
}
