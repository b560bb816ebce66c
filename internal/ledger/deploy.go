package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Outcome is how a deploy, or one of its steps, ended.
type Outcome string

// The outcomes. A deploy is Running from StartDeploy until FinishDeploy; one
// still Running when no slipway holds the deploy lock was cut short by a
// crash and is finished as Interrupted by recovery.
const (
	// Queued: accepted by the agent, waiting for the running deploy.
	Queued      Outcome = "queued"
	Running     Outcome = "running"
	Succeeded   Outcome = "succeeded"
	Failed      Outcome = "failed"
	RolledBack  Outcome = "rolled-back"
	Skipped     Outcome = "skipped"
	Interrupted Outcome = "interrupted"
)

// Valid reports whether o is one of the outcomes above.
func (o Outcome) Valid() bool {
	switch o {
	case Queued, Running, Succeeded, Failed, RolledBack, Skipped, Interrupted:
		return true
	}
	return false
}

// Kinds of deploy.
const (
	KindDeploy   = "deploy"
	KindRollback = "rollback"
	// KindRestore is a snapshot restored by hand: it changes the data,
	// and restarts the services of the live release, not which release is
	// live. It never makes a commit good or bad.
	KindRestore = "restore"
	// KindRebuild is the live commit deployed again into a new release
	// because the build part of the config changed: it puts a release
	// live, but its failure is the config's fault, never the commit's.
	KindRebuild = "rebuild"
	// KindReconfigure restarts the live release because the env files or
	// the services' part of the config changed; KindRestart, KindStart and
	// KindStop are `slipway restart|start|stop`. None of them changes which
	// release is live, nor whether a commit is good or bad.
	KindReconfigure = "reconfigure"
	KindRestart     = "restart"
	KindStart       = "start"
	KindStop        = "stop"
)

// ValidKind reports whether k is a kind of ledger row.
func ValidKind(k string) bool {
	switch k {
	case KindDeploy, KindRollback, KindRestore, KindRebuild, KindReconfigure, KindRestart, KindStart, KindStop:
		return true
	}
	return false
}

// putsLive is the SQL condition of the kinds that put a release live: only
// they count towards a commit being good or bad.
const putsLive = `kind IN ('deploy', 'rollback', 'rebuild')`

// Triggers: what started a deploy.
const (
	TriggerManual   = "manual"
	TriggerPoll     = "poll"
	TriggerWebhook  = "webhook"
	TriggerRollback = "rollback"
	TriggerRecovery = "recovery"
	TriggerAPI      = "api"
)

// Deploy is one row of the ledger: one attempt to put a commit live, or to
// go back to an earlier one.
type Deploy struct {
	ID             int64     `json:"id"`
	Trigger        string    `json:"trigger"` // manual|poll|webhook|rollback|recovery|api
	Actor          string    `json:"actor"`
	Commit         string    `json:"commit"`
	PreviousCommit string    `json:"previous_commit"`
	Release        string    `json:"release"`
	Started        time.Time `json:"started"`
	Finished       time.Time `json:"finished,omitzero"` // zero while running
	Outcome        Outcome   `json:"outcome"`
	Error          string    `json:"error,omitempty"`
	// Bad is set when the commit itself was at fault (build, migrate,
	// health, smoke), so that a later plan skips it.
	Bad  bool   `json:"bad"`
	Kind string `json:"kind"` // deploy, rollback, restore, rebuild, reconfigure, restart, start, stop
	// State and Next are a failure's: what is live after it ("rolled
	// back: …"), and what to do.
	State string `json:"state,omitempty"`
	Next  string `json:"next,omitempty"`
}

// Duration is how long the deploy took, or 0 while it runs.
func (d Deploy) Duration() time.Duration {
	if d.Finished.IsZero() {
		return 0
	}
	return d.Finished.Sub(d.Started)
}

// deployColumns is the column list scanDeploy reads, in its order.
const deployColumns = `id, kind, trigger_type, actor, commit_sha, previous_commit,
	release_name, started, finished, outcome, error_msg, bad, state, next_action`

// StartDeploy records a new deploy as Running and returns its id. ID and
// Outcome in d are ignored; an empty Kind means KindDeploy and a zero
// Started means now.
func (db *DB) StartDeploy(ctx context.Context, d Deploy) (int64, error) {
	return db.insertDeploy(ctx, d, Running, "start")
}

func (db *DB) insertDeploy(ctx context.Context, d Deploy, outcome Outcome, verb string) (int64, error) {
	if d.Kind == "" {
		d.Kind = KindDeploy
	}
	if !ValidKind(d.Kind) {
		return 0, fmt.Errorf("ledger: %s deploy: unknown kind %q", verb, d.Kind)
	}
	if d.Started.IsZero() {
		d.Started = time.Now()
	}
	res, err := db.sql.ExecContext(ctx, `
		INSERT INTO deploys (kind, trigger_type, actor, commit_sha, previous_commit,
			release_name, started, finished, outcome, error_msg, bad)
		VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, '', 0)`,
		d.Kind, d.Trigger, d.Actor, d.Commit, d.PreviousCommit,
		d.Release, formatTime(d.Started), outcome)
	if err != nil {
		return 0, fmt.Errorf("ledger: %s deploy: %w", verb, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("ledger: %s deploy: %w", verb, err)
	}
	return id, nil
}

// Queue records a deploy the agent accepted but cannot start yet (another
// runs) and returns its id; Begin starts it, FinishDeploy may end it unrun.
// The row is written as Queued in one statement: a recovery that runs
// meanwhile must never see it as a running deploy that died.
func (db *DB) Queue(ctx context.Context, d Deploy) (int64, error) {
	return db.insertDeploy(ctx, d, Queued, "queue")
}

// Begin turns queued deploy id into a running one that started at started.
func (db *DB) Begin(ctx context.Context, id int64, started time.Time) error {
	res, err := db.sql.ExecContext(ctx, `UPDATE deploys SET outcome = ?, started = ? WHERE id = ? AND outcome = ?`,
		Running, formatTime(started), id, Queued)
	if err != nil {
		return fmt.Errorf("ledger: begin deploy %d: %w", id, err)
	}
	return expectOne(res, "begin", id)
}

// QueuedDeploys returns the deploys still waiting, oldest first.
func (db *DB) QueuedDeploys(ctx context.Context) ([]Deploy, error) {
	ds, err := db.queryDeploys(ctx, `SELECT `+deployColumns+` FROM deploys
		WHERE outcome = ? ORDER BY id`, Queued)
	if err != nil {
		return nil, fmt.Errorf("ledger: queued deploys: %w", err)
	}
	return ds, nil
}

// UpdateDeploy records the commit, previous commit, release and kind of
// deploy d.ID as they become known (the plan step can turn a deploy into a
// rebuild or a reconfigure). An empty field leaves the stored value as it
// was, so callers may pass only what they just learned.
func (db *DB) UpdateDeploy(ctx context.Context, d Deploy) error {
	if d.Kind != "" && !ValidKind(d.Kind) {
		return fmt.Errorf("ledger: update deploy %d: unknown kind %q", d.ID, d.Kind)
	}
	res, err := db.sql.ExecContext(ctx, `
		UPDATE deploys SET
			commit_sha      = COALESCE(NULLIF(?, ''), commit_sha),
			previous_commit = COALESCE(NULLIF(?, ''), previous_commit),
			release_name    = COALESCE(NULLIF(?, ''), release_name),
			kind            = COALESCE(NULLIF(?, ''), kind)
		WHERE id = ?`,
		d.Commit, d.PreviousCommit, d.Release, d.Kind, d.ID)
	if err != nil {
		return fmt.Errorf("ledger: update deploy %d: %w", d.ID, err)
	}
	return expectOne(res, "update", d.ID)
}

// FinishDeploy records how deploy id ended. outcome must be a final one (not
// Running); bad marks the commit itself as at fault.
func (db *DB) FinishDeploy(ctx context.Context, id int64, outcome Outcome, errMsg string, bad bool, finished time.Time) error {
	if !outcome.Valid() || outcome == Running || outcome == Queued {
		return fmt.Errorf("ledger: finish deploy %d: %q is not a final outcome", id, outcome)
	}
	if finished.IsZero() {
		return fmt.Errorf("ledger: finish deploy %d: zero finish time", id)
	}
	res, err := db.sql.ExecContext(ctx, `
		UPDATE deploys SET finished = ?, outcome = ?, error_msg = ?, bad = ?
		WHERE id = ?`,
		formatTime(finished), outcome, errMsg, bad, id)
	if err != nil {
		return fmt.Errorf("ledger: finish deploy %d: %w", id, err)
	}
	return expectOne(res, "finish", id)
}

// NoteFailure records what a failed deploy left live, and what to do next.
func (db *DB) NoteFailure(ctx context.Context, id int64, state, next string) error {
	res, err := db.sql.ExecContext(ctx, `UPDATE deploys SET state = ?, next_action = ? WHERE id = ?`, state, next, id)
	if err != nil {
		return fmt.Errorf("ledger: note failure of deploy %d: %w", id, err)
	}
	return expectOne(res, "note failure of", id)
}

// expectOne turns an UPDATE that matched no row into ErrNotFound.
func expectOne(res sql.Result, verb string, id int64) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("ledger: %s deploy %d: %w", verb, id, err)
	}
	if n == 0 {
		return fmt.Errorf("ledger: %s deploy %d: %w", verb, id, ErrNotFound)
	}
	return nil
}

// Deploy returns deploy id, or ErrNotFound.
func (db *DB) Deploy(ctx context.Context, id int64) (Deploy, error) {
	row := db.sql.QueryRowContext(ctx, `SELECT `+deployColumns+` FROM deploys WHERE id = ?`, id)
	d, err := scanDeploy(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Deploy{}, fmt.Errorf("ledger: deploy %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Deploy{}, fmt.Errorf("ledger: deploy %d: %w", id, err)
	}
	return d, nil
}

// Deploys returns up to limit deploys, newest first; limit <= 0 returns all.
func (db *DB) Deploys(ctx context.Context, limit int) ([]Deploy, error) {
	ds, err := db.queryDeploys(ctx, `SELECT `+deployColumns+` FROM deploys
		ORDER BY id DESC LIMIT ?`, noLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("ledger: deploys: %w", err)
	}
	return ds, nil
}

// Last returns the newest deploy, whatever its outcome, or ErrNotFound when
// the ledger is empty.
func (db *DB) Last(ctx context.Context) (Deploy, error) {
	row := db.sql.QueryRowContext(ctx, `SELECT `+deployColumns+` FROM deploys
		ORDER BY id DESC LIMIT 1`)
	d, err := scanDeploy(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Deploy{}, fmt.Errorf("ledger: last deploy: %w", ErrNotFound)
	}
	if err != nil {
		return Deploy{}, fmt.Errorf("ledger: last deploy: %w", err)
	}
	return d, nil
}

// Unfinished returns the deploys still marked Running, oldest first. When no
// slipway holds the deploy lock, these were cut short by a crash.
func (db *DB) Unfinished(ctx context.Context) ([]Deploy, error) {
	ds, err := db.queryDeploys(ctx, `SELECT `+deployColumns+` FROM deploys
		WHERE outcome = ? ORDER BY id`, Running)
	if err != nil {
		return nil, fmt.Errorf("ledger: unfinished deploys: %w", err)
	}
	return ds, nil
}

// IsBad reports whether commit is marked bad: some deploy of it was finished
// with bad set, and no deploy of it succeeded after that one.
func (db *DB) IsBad(ctx context.Context, commit string) (bool, error) {
	var bad bool
	err := db.sql.QueryRowContext(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM deploys AS b
			WHERE b.commit_sha = ? AND b.bad
			AND NOT EXISTS (
				SELECT 1 FROM deploys AS s
				WHERE s.commit_sha = b.commit_sha AND s.outcome = ? AND s.id > b.id AND s.`+putsLive+`
			)
		)`, commit, Succeeded).Scan(&bad)
	if err != nil {
		return false, fmt.Errorf("ledger: is bad %s: %w", commit, err)
	}
	return bad, nil
}

// LastGoodReleases returns the newest succeeded deploy (of either kind) of
// each release, newest first, up to limit releases; limit <= 0 returns all.
// Rollback picks its target from these.
func (db *DB) LastGoodReleases(ctx context.Context, limit int) ([]Deploy, error) {
	ds, err := db.queryDeploys(ctx, `SELECT `+deployColumns+` FROM deploys
		WHERE id IN (
			SELECT MAX(id) FROM deploys
			WHERE outcome = ? AND release_name <> '' AND `+putsLive+`
			GROUP BY release_name
		)
		ORDER BY id DESC LIMIT ?`, Succeeded, noLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("ledger: last good releases: %w", err)
	}
	return ds, nil
}

// ReleaseOf returns the release of the newest succeeded deploy of commit, or
// ErrNotFound when commit never went live.
func (db *DB) ReleaseOf(ctx context.Context, commit string) (string, error) {
	var release string
	err := db.sql.QueryRowContext(ctx, `
		SELECT release_name FROM deploys
		WHERE commit_sha = ? AND outcome = ? AND release_name <> '' AND `+putsLive+`
		ORDER BY id DESC LIMIT 1`, commit, Succeeded).Scan(&release)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("ledger: release of %s: %w", commit, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("ledger: release of %s: %w", commit, err)
	}
	return release, nil
}

func (db *DB) queryDeploys(ctx context.Context, query string, args ...any) ([]Deploy, error) {
	rows, err := db.sql.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var ds []Deploy
	for rows.Next() {
		d, err := scanDeploy(rows)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, rows.Err()
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

func scanDeploy(s scanner) (Deploy, error) {
	var (
		d                Deploy
		started, outcome string
		finished         sql.NullString
	)
	err := s.Scan(&d.ID, &d.Kind, &d.Trigger, &d.Actor, &d.Commit, &d.PreviousCommit,
		&d.Release, &started, &finished, &outcome, &d.Error, &d.Bad, &d.State, &d.Next)
	if err != nil {
		return Deploy{}, err
	}
	d.Outcome = Outcome(outcome)
	if d.Started, err = parseTime(started); err != nil {
		return Deploy{}, fmt.Errorf("deploy %d: started: %w", d.ID, err)
	}
	if finished.Valid {
		if d.Finished, err = parseTime(finished.String); err != nil {
			return Deploy{}, fmt.Errorf("deploy %d: finished: %w", d.ID, err)
		}
	}
	return d, nil
}

// MarkBad marks commit bad without a failed deploy of it: an operator rolled
// back away from it, so a plain deploy must not bring it straight back. It
// flags the newest deploy of commit; a later successful deploy of the commit
// (with --force) clears it, as for any bad commit.
func (db *DB) MarkBad(ctx context.Context, commit, reason string) error {
	res, err := db.sql.ExecContext(ctx, `
		UPDATE deploys SET bad = 1,
			error_msg = CASE WHEN error_msg = '' THEN ? ELSE error_msg || '; ' || ? END
		WHERE id = (SELECT MAX(id) FROM deploys WHERE commit_sha = ? AND kind = ?)`,
		reason, reason, commit, KindDeploy)
	if err != nil {
		return fmt.Errorf("ledger: mark %s bad: %w", commit, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("ledger: mark %s bad: %w", commit, ErrNotFound)
	}
	return nil
}

// BadBecause returns why commit is marked bad: the error of the newest
// deploy of it that marked it ("" when it is not marked).
func (db *DB) BadBecause(ctx context.Context, commit string) (string, error) {
	var why string
	err := db.sql.QueryRowContext(ctx, `
		SELECT error_msg FROM deploys WHERE commit_sha = ? AND bad ORDER BY id DESC LIMIT 1`, commit).Scan(&why)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("ledger: why %s is bad: %w", commit, err)
	}
	return why, nil
}
