package fleet

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"
)

// Ledger is the operator's record of rollouts: each one's plan, and every
// host's transitions with times and errors. It is SQLite in WAL mode,
// fsynced at each commit.
type Ledger struct {
	sql *sql.DB
	// Transitions that arrive while others are being written wait for
	// the next commit, which writes them all (a group commit): a batch of
	// hosts costs a few fsyncs, not one each.
	mu      sync.Mutex
	pending []pendingTransition
	writing bool  // a drain runs
	err     error // the first failed commit since the last Flush
}

type pendingTransition struct {
	t       Transition
	barrier bool // Flush's: nothing to write
	done    chan error
}

// Rollout outcomes. A rollout whose process died is found "running" with
// its lock free, and is then marked interrupted.
const (
	Running     = "running"
	Succeeded   = "succeeded"
	Halted      = "halted"   // stopped past max_fail; updated hosts left as they are
	Reverted    = "reverted" // stopped past max_fail; updated hosts rolled back
	Failed      = "failed"   // some host is not healthy
	Interrupted = "interrupted"
)

// Host states in a rollout.
const (
	HostPending    = "pending"
	HostDeploying  = "deploying"
	HostChecking   = "checking"
	HostDone       = "done"        // deployed and checked
	HostUnchanged  = "unchanged"   // it already ran the commit, healthy
	HostFailed     = "failed"      // its deploy or a check failed; rolled back to what it ran
	HostUnhealthy  = "unhealthy"   // failed and not healthy afterwards
	HostNotStarted = "not-started" // the rollout stopped before it
	HostReverting  = "reverting"
	HostReverted   = "reverted"
)

// RolloutRow is one rollout.
type RolloutRow struct {
	ID       int64
	App      string
	Kind     string // deploy | rollback
	Commit   string
	Actor    string
	Plan     Plan
	Started  time.Time
	Finished time.Time
	Outcome  string
	Error    string
}

// Plan is what a rollout was asked to do: enough to resume it.
type Plan struct {
	Commit  string     `json:"commit"`
	Repo    string     `json:"repo,omitempty"`
	Force   bool       `json:"force,omitempty"`
	Hosts   []string   `json:"hosts"`
	Batches [][]string `json:"batches"`
	MaxFail int        `json:"max_fail"`
	OnFail  string     `json:"on_fail"`
	Pause   string     `json:"pause,omitempty"`
	Push    bool       `json:"push,omitempty"`
	// Before is each host's safe commit when the rollout began: where a
	// revert takes it back.
	Before map[string]string `json:"before,omitempty"`
}

// Transition is one host's state change in a rollout.
type Transition struct {
	Rollout int64     `json:"rollout"`
	Host    string    `json:"host"`
	State   string    `json:"state"`
	Commit  string    `json:"commit,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

const fleetSchema = `
CREATE TABLE IF NOT EXISTS rollouts (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	app      TEXT NOT NULL,
	kind     TEXT NOT NULL,
	commit_sha TEXT NOT NULL,
	actor    TEXT NOT NULL,
	plan     TEXT NOT NULL,
	started  TEXT NOT NULL,
	finished TEXT,
	outcome  TEXT NOT NULL,
	error    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS transitions (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	rollout  INTEGER NOT NULL REFERENCES rollouts(id),
	host     TEXT NOT NULL,
	state    TEXT NOT NULL,
	commit_sha TEXT NOT NULL,
	detail   TEXT NOT NULL,
	at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_rollout ON transitions(rollout, id);
CREATE TABLE IF NOT EXISTS snapshots (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	rollout  INTEGER NOT NULL,
	host     TEXT NOT NULL,
	snapshot TEXT NOT NULL,
	label    TEXT NOT NULL,
	vm_id    TEXT NOT NULL,
	commit_sha TEXT NOT NULL,
	created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS replacements (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	host     TEXT NOT NULL,
	snapshot TEXT NOT NULL,
	old_addr TEXT NOT NULL,
	old_vm_id TEXT NOT NULL,
	new_addr TEXT NOT NULL,
	new_vm_id TEXT NOT NULL,
	at       TEXT NOT NULL
);
`

// OpenLedger opens (creating) the fleet ledger at path.
func OpenLedger(path string) (*Ledger, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, err
	}
	// One connection: the rollout's hosts record their transitions at
	// once, and database/sql queues them, where SQLite's busy handler
	// would have each writer sleep and retry, for seconds under load.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(fleetSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("fleet ledger %s: %w", abs, err)
	}
	return &Ledger{sql: db}, nil
}

// Close commits what was posted, then closes the database.
func (l *Ledger) Close() error {
	ferr := l.Flush(context.Background())
	return errors.Join(ferr, l.sql.Close())
}

const timeFormat = time.RFC3339Nano

// StartRollout records a new rollout as running.
func (l *Ledger) StartRollout(ctx context.Context, r RolloutRow) (int64, error) {
	plan, err := json.Marshal(r.Plan)
	if err != nil {
		return 0, err
	}
	res, err := l.sql.ExecContext(ctx, `INSERT INTO rollouts (app, kind, commit_sha, actor, plan, started, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.App, r.Kind, r.Commit, r.Actor, string(plan), r.Started.UTC().Format(timeFormat), Running)
	if err != nil {
		return 0, fmt.Errorf("fleet ledger: %w", err)
	}
	return res.LastInsertId()
}

// UpdatePlan rewrites a rollout's plan (its hosts' commits before it).
func (l *Ledger) UpdatePlan(ctx context.Context, id int64, p Plan) error {
	plan, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = l.sql.ExecContext(ctx, `UPDATE rollouts SET plan = ? WHERE id = ?`, string(plan), id)
	return err
}

// FinishRollout records a rollout's outcome.
func (l *Ledger) FinishRollout(ctx context.Context, id int64, outcome, msg string) error {
	_, err := l.sql.ExecContext(ctx, `UPDATE rollouts SET outcome = ?, error = ?, finished = ? WHERE id = ?`,
		outcome, msg, time.Now().UTC().Format(timeFormat), id)
	if err != nil {
		return fmt.Errorf("fleet ledger: %w", err)
	}
	return nil
}

// Post queues a host's transition for the next commit and returns at once,
// with where the commit's error will come. Transitions are written in the
// order they were posted; those posted while a commit is being written
// share the next (a group commit: a batch of hosts costs a few fsyncs,
// not one each, and no host waits on the disk).
func (l *Ledger) Post(t Transition) <-chan error {
	if t.At.IsZero() {
		t.At = time.Now()
	}
	return l.enqueue(pendingTransition{t: t})
}

// Flush waits until every transition posted before it is committed, and
// returns the first error of any commit since the last Flush.
func (l *Ledger) Flush(ctx context.Context) error {
	select {
	case <-l.enqueue(pendingTransition{barrier: true}): //nolint:errcheck // its commit's error is in l.err too
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.err
	l.err = nil
	return err
}

func (l *Ledger) enqueue(p pendingTransition) <-chan error {
	p.done = make(chan error, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, p)
	if !l.writing {
		l.writing = true
		go l.drain()
	}
	return p.done
}

// drain writes what waits, commit by commit, until nothing does.
func (l *Ledger) drain() {
	for {
		l.mu.Lock()
		batch := l.pending
		l.pending = nil
		if len(batch) == 0 {
			l.writing = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		err := l.insert(context.Background(), batch)
		l.mu.Lock()
		if err != nil && l.err == nil {
			l.err = err
		}
		l.mu.Unlock()
		for _, p := range batch {
			p.done <- err
		}
	}
}

func (l *Ledger) insert(ctx context.Context, batch []pendingTransition) error {
	tx, err := l.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("fleet ledger: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, p := range batch {
		if p.barrier {
			continue
		}
		t := p.t
		if _, err := tx.ExecContext(ctx, `INSERT INTO transitions (rollout, host, state, commit_sha, detail, at) VALUES (?, ?, ?, ?, ?, ?)`,
			t.Rollout, t.Host, t.State, t.Commit, t.Detail, t.At.UTC().Format(timeFormat)); err != nil {
			return fmt.Errorf("fleet ledger: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("fleet ledger: %w", err)
	}
	return nil
}

// Rollouts lists rollouts, newest first.
func (l *Ledger) Rollouts(ctx context.Context, limit int) ([]RolloutRow, error) {
	return l.rollouts(ctx, `ORDER BY id DESC LIMIT ?`, limit)
}

// rollouts reads the rollouts that the SQL after FROM rollouts selects.
func (l *Ledger) rollouts(ctx context.Context, where string, args ...any) ([]RolloutRow, error) {
	rows, err := l.sql.QueryContext(ctx, `SELECT id, app, kind, commit_sha, actor, plan, started, COALESCE(finished, ''), outcome, error
		FROM rollouts `+where, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []RolloutRow
	for rows.Next() {
		var r RolloutRow
		var plan, started, finished string
		if err := rows.Scan(&r.ID, &r.App, &r.Kind, &r.Commit, &r.Actor, &plan, &started, &finished, &r.Outcome, &r.Error); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(plan), &r.Plan)
		r.Started, _ = time.Parse(timeFormat, started)
		r.Finished, _ = time.Parse(timeFormat, finished)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ErrNoRollout is a rollout id the ledger does not have.
var ErrNoRollout = errors.New("no such rollout")

// Rollout returns one rollout and its transitions.
func (l *Ledger) Rollout(ctx context.Context, id int64) (RolloutRow, []Transition, error) {
	found, err := l.rollouts(ctx, `WHERE id = ?`, id)
	if err != nil {
		return RolloutRow{}, nil, err
	}
	if len(found) == 0 {
		return RolloutRow{}, nil, fmt.Errorf("rollout %d: %w", id, ErrNoRollout)
	}
	r := found[0]
	rows, err := l.sql.QueryContext(ctx, `SELECT host, state, commit_sha, detail, at FROM transitions WHERE rollout = ? ORDER BY id`, id)
	if err != nil {
		return r, nil, err
	}
	defer func() { _ = rows.Close() }()
	var ts []Transition
	for rows.Next() {
		t := Transition{Rollout: id}
		var at string
		if err := rows.Scan(&t.Host, &t.State, &t.Commit, &t.Detail, &at); err != nil {
			return r, nil, err
		}
		t.At, _ = time.Parse(timeFormat, at)
		ts = append(ts, t)
	}
	return r, ts, rows.Err()
}

// MarkInterrupted marks every running rollout interrupted: called with the
// fleet's lock held, so none of them has a process any more.
func (l *Ledger) MarkInterrupted(ctx context.Context) error {
	_, err := l.sql.ExecContext(ctx, `UPDATE rollouts SET outcome = ?, error = 'the operator''s slipway stopped mid-rollout', finished = ? WHERE outcome = ?`,
		Interrupted, time.Now().UTC().Format(timeFormat), Running)
	return err
}

// Reopen marks an interrupted rollout running again, for a resume.
func (l *Ledger) Reopen(ctx context.Context, id int64) error {
	res, err := l.sql.ExecContext(ctx, `UPDATE rollouts SET outcome = ?, error = '', finished = NULL WHERE id = ? AND outcome = ?`, Running, id, Interrupted)
	if err != nil {
		return fmt.Errorf("fleet ledger: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("rollout %d was not interrupted: only an interrupted rollout is resumed", id)
	}
	return nil
}

// Snapshot is a VM snapshot the fleet took of a host.
type Snapshot struct {
	Rollout int64     `json:"rollout,omitempty"`
	Host    string    `json:"host"`
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	VMID    string    `json:"vm_id"`
	Commit  string    `json:"commit"`
	Created time.Time `json:"created"`
}

// AddSnapshot records a snapshot of a host.
func (l *Ledger) AddSnapshot(ctx context.Context, s Snapshot) error {
	_, err := l.sql.ExecContext(ctx, `INSERT INTO snapshots (rollout, host, snapshot, label, vm_id, commit_sha, created) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		s.Rollout, s.Host, s.ID, s.Label, s.VMID, s.Commit, s.Created.UTC().Format(timeFormat))
	if err != nil {
		return fmt.Errorf("fleet ledger: %w", err)
	}
	return nil
}

// Snapshots lists a host's snapshots (all hosts' when host is ""), newest first.
func (l *Ledger) Snapshots(ctx context.Context, host string) ([]Snapshot, error) {
	rows, err := l.sql.QueryContext(ctx, `SELECT rollout, host, snapshot, label, vm_id, commit_sha, created FROM snapshots
		WHERE ? = '' OR host = ? ORDER BY id DESC`, host, host)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []Snapshot
	for rows.Next() {
		var s Snapshot
		var created string
		if err := rows.Scan(&s.Rollout, &s.Host, &s.ID, &s.Label, &s.VMID, &s.Commit, &created); err != nil {
			return nil, err
		}
		s.Created, _ = time.Parse(timeFormat, created)
		out = append(out, s)
	}
	return out, rows.Err()
}

// Replacement is a host restored into a new VM: the entry it replaced.
type Replacement struct {
	Host, Snapshot, OldAddr, OldVMID, NewAddr, NewVMID string
	At                                                 time.Time
}

// AddReplacement keeps the inventory entry a restore replaced.
func (l *Ledger) AddReplacement(ctx context.Context, r Replacement) error {
	_, err := l.sql.ExecContext(ctx, `INSERT INTO replacements (host, snapshot, old_addr, old_vm_id, new_addr, new_vm_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.Host, r.Snapshot, r.OldAddr, r.OldVMID, r.NewAddr, r.NewVMID, r.At.UTC().Format(timeFormat))
	if err != nil {
		return fmt.Errorf("fleet ledger: %w", err)
	}
	return nil
}
