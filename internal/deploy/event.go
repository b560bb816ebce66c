package deploy

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/slipway-dev/slipway/internal/failpoint"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// Event phases: a step starts or ends; a job the agent ran is done (its
// Outcome is the deploy's, Detail its error).
const (
	PhaseStart = "start"
	PhaseEnd   = "end"
	PhaseDone  = "done"
)

// Event is one step starting or ending, or a job done.
type Event struct {
	DeployID int64          `json:"deploy_id"`
	Step     string         `json:"step"`
	Phase    string         `json:"phase"` // PhaseStart, PhaseEnd or PhaseDone
	Outcome  ledger.Outcome `json:"outcome,omitempty"`
	Detail   string         `json:"detail,omitempty"`
	Duration time.Duration  `json:"duration_ns,omitempty"`
	Time     time.Time      `json:"time"`
}

// journal records one deploy: its ledger rows, its output log, the
// one-line-per-step deploy.log, and the events observers see.
type journal struct {
	e    *Engine
	id   int64
	out  *os.File // logs/deploys/<id>.log
	step string
	t0   time.Time
}

func (e *Engine) openJournal(id int64) (*journal, error) {
	path := filepath.Join(e.Layout.DeployLogDir(), strconv.FormatInt(id, 10)+".log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open deploy log: %w", err)
	}
	return &journal{e: e, id: id, out: f}, nil
}

// Output is where commands of this deploy write.
func (j *journal) Output() io.Writer { return j.out }

func (j *journal) close() {
	_ = j.out.Sync()
	_ = j.out.Close()
}

func (j *journal) start(step string) {
	j.step, j.t0 = step, j.e.now()
	fmt.Fprintf(j.out, "==> %s %s\n", j.t0.Format(time.RFC3339), step)
	j.emit(Event{Step: step, Phase: PhaseStart, Time: j.t0})
	failpoint.Hit("before:" + step)
}

// end closes the running step with outcome and records it everywhere. A
// step the ledger could not record is an error: recovery reads the steps.
func (j *journal) end(ctx context.Context, outcome ledger.Outcome, detail string) error {
	now := j.e.now()
	d := now.Sub(j.t0)
	fmt.Fprintf(j.out, "<== %s %s (%s) %s\n", j.step, outcome, d.Round(time.Millisecond), detail)
	// The ledger write uses its own context: a cancelled deploy still records its steps.
	err := j.e.Ledger.AddStep(context.WithoutCancel(ctx), ledger.Step{
		DeployID: j.id, Name: j.step, Started: j.t0, Duration: d, Outcome: outcome, Detail: detail,
	})
	j.e.appendDeployLog(j.id, j.step, outcome, d, detail)
	j.emit(Event{Step: j.step, Phase: PhaseEnd, Outcome: outcome, Detail: detail, Duration: d, Time: now})
	failpoint.Hit("after:" + j.step)
	return err
}

func (j *journal) emit(ev Event) {
	ev.DeployID = j.id
	if j.e.Observe != nil {
		j.e.Observe(ev)
	}
}

// appendDeployLog adds one line to logs/deploy.log.
func (e *Engine) appendDeployLog(id int64, step string, outcome ledger.Outcome, d time.Duration, detail string) {
	f, err := os.OpenFile(filepath.Join(e.Layout.LogDir(), "deploy.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	line := fmt.Sprintf("%s deploy=%d step=%s outcome=%s duration=%s", e.now().Format(time.RFC3339), id, step, outcome, d.Round(time.Millisecond))
	if detail != "" {
		line += " detail=" + strconv.Quote(oneLine(detail))
	}
	_, _ = f.WriteString(line + "\n")
}

func oneLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}
