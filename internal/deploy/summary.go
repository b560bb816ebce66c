package deploy

import "errors"

// Summary is the stable machine form of a deploy's or rollback's result:
// what `--json` prints and what the agent's API returns.
type Summary struct {
	ID         int64  `json:"id,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Outcome    string `json:"outcome"`
	Commit     string `json:"commit,omitempty"`
	Previous   string `json:"previous_commit,omitempty"`
	Release    string `json:"release,omitempty"`
	Version    string `json:"version,omitempty"`
	Message    string `json:"message,omitempty"`
	Warning    string `json:"warning,omitempty"`
	Error      string `json:"error,omitempty"`
	FailedStep string `json:"failed_step,omitempty"`
	RolledBack bool   `json:"rolled_back,omitempty"`
	State      string `json:"state,omitempty"` // what is live after a failure
	Next       string `json:"next,omitempty"`  // what the operator should do
	Detail     string `json:"detail,omitempty"`
	Plan       *Plan  `json:"plan,omitempty"`
	ExitCode   int    `json:"exit_code"`
}

// Summarize turns a result and its error into a Summary; code is the exit
// code the caller maps err to.
func Summarize(r Result, err error, code int) Summary {
	s := Summary{ID: r.DeployID, Kind: r.Kind, Outcome: string(r.Outcome), Commit: r.Commit, Previous: r.Previous,
		Release: r.Release, Version: r.Version, Message: r.Message, Warning: r.Warning, Plan: r.Plan, ExitCode: code}
	if r.Plan != nil {
		s.Outcome = "dry-run"
	}
	if err != nil {
		s.Error = err.Error()
		if s.Outcome == "" {
			s.Outcome = "refused"
		}
		var f *Failure
		if errors.As(err, &f) {
			s.FailedStep, s.RolledBack, s.State, s.Next = f.Step, f.RolledBack, f.State, f.Next
			s.Detail = Describe(f.Err)
			if s.ID == 0 {
				s.ID = f.DeployID
			}
		}
	}
	return s
}
