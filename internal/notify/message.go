package notify

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Outcomes a Message carries. The first four are the ledger's deploy
// outcomes; Rollback is a manual `slipway rollback`.
const (
	Succeeded   = "succeeded"
	Failed      = "failed"
	RolledBack  = "rolled-back"
	Interrupted = "interrupted"
	Rollback    = "rollback"
)

// Message is one deploy notification, the JSON body of the POST.
//
// For a manual rollback (Outcome Rollback), Commit is the commit rolled back
// to and Previous the one that was live before.
type Message struct {
	App      string        `json:"app"`
	Commit   string        `json:"commit"`
	Previous string        `json:"previous_commit,omitempty"`
	Outcome  string        `json:"outcome"`
	Duration time.Duration `json:"-"` // sent as "duration_seconds", a float
	Error    string        `json:"error,omitempty"`
	DeployID int64         `json:"deploy_id"`
	Host     string        `json:"host"`
	Text     string        `json:"text"` // one human sentence; Describe(m) when empty
	Time     time.Time     `json:"time"`
	// Same, when set, is what makes two failures of a commit the same one
	// for de-duplication (e.g. the failed step), in place of Error, whose
	// text may differ from one attempt to the next. It is not sent.
	Same string `json:"-"`
}

// wireMessage is Message as it travels: the duration in seconds.
type wireMessage struct {
	App             string    `json:"app"`
	Commit          string    `json:"commit"`
	Previous        string    `json:"previous_commit,omitempty"`
	Outcome         string    `json:"outcome"`
	DurationSeconds float64   `json:"duration_seconds"`
	Error           string    `json:"error,omitempty"`
	DeployID        int64     `json:"deploy_id"`
	Host            string    `json:"host"`
	Text            string    `json:"text"`
	Time            time.Time `json:"time"`
}

// MarshalJSON writes the duration as "duration_seconds" and the time in UTC.
func (m Message) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireMessage{
		App: m.App, Commit: m.Commit, Previous: m.Previous, Outcome: m.Outcome,
		DurationSeconds: m.Duration.Seconds(), Error: m.Error, DeployID: m.DeployID,
		Host: m.Host, Text: m.Text, Time: m.Time.UTC(),
	})
}

// UnmarshalJSON reads what MarshalJSON writes, for receivers written in Go.
func (m *Message) UnmarshalJSON(b []byte) error {
	var w wireMessage
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Message{
		App: w.App, Commit: w.Commit, Previous: w.Previous, Outcome: w.Outcome,
		Duration: time.Duration(w.DurationSeconds * float64(time.Second)), Error: w.Error,
		DeployID: w.DeployID, Host: w.Host, Text: w.Text, Time: w.Time,
	}
	return nil
}

// Describe writes m as one link-free sentence for people, e.g.
// "board: deploy 12 of 1a2b3c4 failed at health after 3.2s: ...".
// Only the first line of the error is kept, shortened, with any URL in it
// reduced to its host and path (no scheme, credentials or query).
func Describe(m Message) string {
	app := m.App
	if app == "" {
		app = "slipway"
	}
	step, cause := splitStep(m.Error)
	at := ""
	if step != "" {
		at = " at " + step
	}
	var s string
	switch m.Outcome {
	case Succeeded:
		s = deployName(m) + " succeeded" + span(" in ", m.Duration)
		if p := short(m.Previous); p != "" && p != short(m.Commit) {
			s += ", replacing " + p
		}
	case Failed:
		s = deployName(m) + " failed" + at + span(" after ", m.Duration)
	case RolledBack:
		s = deployName(m) + " failed" + at + span(" after ", m.Duration) + " and was rolled back"
		if p := short(m.Previous); p != "" {
			s += " to " + p
		}
	case Interrupted:
		s = deployName(m) + " was interrupted" + at + span(" after ", m.Duration)
	case Rollback:
		to := ""
		if c := short(m.Commit); c != "" {
			to = " to " + c
		}
		from := ""
		if p := short(m.Previous); p != "" {
			from = " from " + p
		}
		if m.Error == "" {
			s = "rolled back" + to + from + span(" in ", m.Duration)
		} else {
			s = "rollback" + to + from + " failed" + at + span(" after ", m.Duration)
		}
	default:
		outcome := m.Outcome
		if outcome == "" {
			outcome = "ended"
		}
		s = deployName(m) + " " + outcome + at + span(" after ", m.Duration)
	}
	if cause != "" {
		s += ": " + cause
	}
	return app + ": " + s
}

func deployName(m Message) string {
	s := "deploy"
	if m.DeployID > 0 {
		s += fmt.Sprintf(" %d", m.DeployID)
	}
	if c := short(m.Commit); c != "" {
		s += " of " + c
	}
	return s
}

// short abbreviates a commit sha the way git log --oneline does.
func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// span formats a duration for people: "3.2s", "41s", "2m5s"; "" when unknown.
func span(prefix string, d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d >= time.Minute:
		d = d.Round(time.Second)
	case d >= time.Second:
		d = d.Round(100 * time.Millisecond)
	default:
		d = d.Round(time.Millisecond)
	}
	return prefix + d.String()
}

// steps are the deploy's step names (docs/deploy.md) and the rollback's: a deploy
// failure reads "<step>: <cause>".
var steps = map[string]bool{
	"lock": true, "resolve": true, "plan": true, "prepare": true, "build": true,
	"verify-env": true, "snapshot": true, "migrate": true, "stamp": true,
	"switch": true, "restart": true, "health": true, "smoke": true,
	"mark-safe": true, "post-snapshot": true, "prune": true, "rollback": true,
	"recover": true,
}

// maxCause bounds the error part of a sentence, in runes.
const maxCause = 300

// splitStep returns the step a deploy error names at its start, and the
// rest of its first line made fit for a chat message.
func splitStep(err string) (step, cause string) {
	line, _, _ := strings.Cut(strings.TrimSpace(err), "\n")
	if name, rest, ok := strings.Cut(line, ": "); ok && (steps[name] || name == "deploy") {
		line = rest
		if name != "deploy" { // the engine's name for "no step in particular"
			step = name
		}
	}
	line = strings.Join(strings.Fields(unlink(line)), " ")
	if r := []rune(line); len(r) > maxCause {
		line = string(r[:maxCause-1]) + "…"
	}
	return step, line
}

var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+`)

// unlink reduces every URL in s to host and path: no scheme to make it a
// link, no credentials or query that could hold a token.
func unlink(s string) string {
	return urlPattern.ReplaceAllStringFunc(s, func(raw string) string {
		trimmed := strings.TrimRight(raw, ".,;:)]}")
		u, err := url.Parse(trimmed)
		if err != nil || u.Host == "" {
			return "[url]" + raw[len(trimmed):]
		}
		return u.Host + u.EscapedPath() + raw[len(trimmed):]
	})
}
