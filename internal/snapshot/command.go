package snapshot

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/slipway-dev/slipway/internal/run"
)

// Command runs the operator's own snapshot commands (a cloud's VM snapshot,
// an LVM or ZFS snapshot). Each is a template, split into words first and
// then filled in word by word, and run as an argv: a value ({{.Label}},
// say) is always one argument and never reaches a shell.
type Command struct {
	CreateCmd, RestoreCmd, DeleteCmd *Template
	// IDPattern finds the snapshot id in Create's output: its first
	// capture group when it has one, else the whole match.
	IDPattern *regexp.Regexp
	VMID      string
	// Timeout bounds each command (DefaultTimeout when 0).
	Timeout time.Duration
	// Env is the commands' environment (nil: a minimal one).
	Env []string
	// Track, when set, records each command while it runs (run.Tracker).
	Track *run.Tracker
}

// DefaultTimeout bounds a snapshot command when none is configured.
const DefaultTimeout = 10 * time.Minute

// Vars are the values a template can use.
type Vars struct {
	VMID, ID, Label, App, Commit string
}

// Template is a command line with {{.VMID}}-style placeholders.
type Template struct {
	Text  string
	words []*template.Template
}

// ParseTemplate checks a command template: its words, and that it uses
// only the placeholders of Vars.
func ParseTemplate(text string) (*Template, error) {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	t := &Template{Text: text}
	for _, f := range fields {
		w, err := template.New("").Option("missingkey=error").Parse(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		if err := w.Execute(&strings.Builder{}, Vars{}); err != nil {
			return nil, fmt.Errorf("%q: unknown placeholder (use {{.VMID}}, {{.ID}}, {{.Label}}, {{.App}} or {{.Commit}})", f)
		}
		t.words = append(t.words, w)
	}
	return t, nil
}

// Argv fills the template in.
func (t *Template) Argv(v Vars) ([]string, error) {
	argv := make([]string, 0, len(t.words))
	for _, w := range t.words {
		var b strings.Builder
		if err := w.Execute(&b, v); err != nil {
			return nil, err
		}
		argv = append(argv, b.String())
	}
	return argv, nil
}

// Name implements Provider.
func (c *Command) Name() string { return "command" }

func (c *Command) run(ctx context.Context, t *Template, v Vars) (string, error) {
	argv, err := t.Argv(v)
	if err != nil {
		return "", err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return run.Output(ctx, run.Cmd{Argv: argv, Env: c.Env, Timeout: timeout, Track: c.Track})
}

// Create runs the create command and finds the id in its output.
func (c *Command) Create(ctx context.Context, r Request) (Taken, error) {
	vmID := r.VMID
	if vmID == "" {
		vmID = c.VMID
	}
	out, err := c.run(ctx, c.CreateCmd, Vars{VMID: vmID, Label: r.Label, App: r.App, Commit: r.Commit})
	if err != nil {
		return Taken{}, fmt.Errorf("snapshot create: %w", err)
	}
	m := c.IDPattern.FindStringSubmatch(out)
	if m == nil {
		return Taken{}, fmt.Errorf("snapshot create: its output has no id matching id_pattern %q; it printed:\n%s",
			c.IDPattern, run.LastLines(out, 10))
	}
	id := m[0]
	if len(m) > 1 {
		id = m[1]
	}
	return Taken{ID: id}, nil
}

// Restore runs the restore command.
func (c *Command) Restore(ctx context.Context, id string) error {
	if c.RestoreCmd == nil {
		return fmt.Errorf("snapshot restore: no snapshot.restore command: %w", ErrNotSupported)
	}
	if _, err := c.run(ctx, c.RestoreCmd, Vars{VMID: c.VMID, ID: id}); err != nil {
		return fmt.Errorf("snapshot restore %s: %w", id, err)
	}
	return nil
}

// Delete runs the delete command.
func (c *Command) Delete(ctx context.Context, id string) error {
	if c.DeleteCmd == nil {
		return fmt.Errorf("snapshot delete: no snapshot.delete command: %w", ErrNotSupported)
	}
	if _, err := c.run(ctx, c.DeleteCmd, Vars{VMID: c.VMID, ID: id}); err != nil {
		return fmt.Errorf("snapshot delete %s: %w", id, err)
	}
	return nil
}
