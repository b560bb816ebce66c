package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/fsutil"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/snapshot"
)

// Snapshot labels the fleet takes.
const (
	LabelPreDeploy  = snapshot.LabelPreDeploy
	LabelPostDeploy = snapshot.LabelPostDeploy
)

// takeSnapshot runs fleet.snapshot.create here for h, finds the id in its
// output, and records it in the fleet ledger and in h's snapshot ledger
// (with the operator as agent).
func (f *Fleet) takeSnapshot(ctx context.Context, h *Host, rollout int64, label, commit string) (string, error) {
	sn := f.F.Snapshot
	t, err := snapshot.ParseTemplate(sn.Create)
	if err != nil {
		return "", err
	}
	out, err := f.runTemplate(ctx, t, snapshot.Vars{VMID: h.Values.VMID, Label: label, App: f.Cfg.App, Commit: commit})
	if err != nil {
		return "", fmt.Errorf("%s snapshot of %s: %w", label, h.Name, err)
	}
	id := find(regexp.MustCompile(sn.IDPattern), out)
	if id == "" {
		return "", fmt.Errorf("%s snapshot of %s: its output has no id matching id_pattern %q; it printed:\n%s", label, h.Name, sn.IDPattern, run.LastLines(out, 10))
	}
	if err := f.DB.AddSnapshot(ctx, Snapshot{Rollout: rollout, Host: h.Name, ID: id, Label: label, VMID: h.Values.VMID, Commit: commit, Created: time.Now()}); err != nil {
		return id, err
	}
	args := []string{"snapshot", "record", "--id", id, "--vm-id", h.Values.VMID, "--label", label, "--agent", "fleet:" + f.Actor, "--tag", fmt.Sprintf("rollout-%d", rollout)}
	if commit != "" {
		args = append(args, "--commit", commit)
	}
	if _, err := f.remote(ctx, h, nil, nil, args...); err != nil {
		return id, fmt.Errorf("record snapshot %s on %s: %w", id, h.Name, err)
	}
	return id, nil
}

func (f *Fleet) runTemplate(ctx context.Context, t *snapshot.Template, v snapshot.Vars) (string, error) {
	argv, err := t.Argv(v)
	if err != nil {
		return "", err
	}
	return run.Output(ctx, run.Cmd{Argv: argv, Env: os.Environ(), Timeout: f.F.Snapshot.Timeout.D()})
}

// find is re's first capture group in out, or its whole match.
func find(re *regexp.Regexp, out string) string {
	m := re.FindStringSubmatch(out)
	switch {
	case m == nil:
		return ""
	case len(m) > 1:
		return m[1]
	}
	return m[0]
}

// Restored is what `fleet restore` made of a host.
type Restored struct {
	Host     string      `json:"host"`
	Snapshot string      `json:"snapshot"`
	OldAddr  string      `json:"old_addr"`
	OldVMID  string      `json:"old_vm_id"`
	NewAddr  string      `json:"new_addr"`
	NewVMID  string      `json:"new_vm_id"`
	Status   *HostStatus `json:"status,omitempty"`
	Error    string      `json:"error,omitempty"`
}

// Restore runs fleet.snapshot.restore for h's snapshot id (its newest
// when id is ""), which makes a new VM with the old state. It reads the new
// VM's id and address from the output, writes them into the inventory in
// place of h's (atomically; the old entry is kept in the fleet ledger),
// and then checks the new host: slipway answers over ssh, it is healthy,
// and the external checks pass.
func (f *Fleet) Restore(ctx context.Context, inv *Inventory, h *Host, id string) (*Restored, error) {
	sn := f.F.Snapshot
	if sn == nil || sn.Restore == "" {
		return nil, errors.New("fleet.snapshot.restore is not configured")
	}
	snaps, err := f.DB.Snapshots(ctx, h.Name)
	if err != nil {
		return nil, err
	}
	var snap *Snapshot
	for i := range snaps {
		if id == "" || snaps[i].ID == id {
			snap = &snaps[i]
			break
		}
	}
	if snap == nil {
		if id == "" {
			return nil, fmt.Errorf("the fleet ledger has no snapshot of %s", h.Name)
		}
		return nil, fmt.Errorf("the fleet ledger has no snapshot %s of %s", id, h.Name)
	}
	t, err := snapshot.ParseTemplate(sn.Restore)
	if err != nil {
		return nil, err
	}
	out, err := f.runTemplate(ctx, t, snapshot.Vars{VMID: snap.VMID, ID: snap.ID, Label: snap.Label, App: f.Cfg.App, Commit: snap.Commit})
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", snap.ID, err)
	}
	r := &Restored{Host: h.Name, Snapshot: snap.ID, OldAddr: h.Values.Addr, OldVMID: h.Values.VMID,
		NewVMID: find(regexp.MustCompile(sn.NewVMPattern), out), NewAddr: find(regexp.MustCompile(sn.NewAddrPattern), out)}
	if r.NewVMID == "" || r.NewAddr == "" {
		return r, fmt.Errorf("restore %s: its output lacks the new VM's id (new_vm_pattern %q) or address (new_addr_pattern %q); it printed:\n%s",
			snap.ID, sn.NewVMPattern, sn.NewAddrPattern, run.LastLines(out, 10))
	}
	text, err := inv.Replace(h.Name, r.OldAddr, r.NewAddr, r.OldVMID, r.NewVMID)
	if err != nil {
		return r, fmt.Errorf("the new VM is %s at %s, but %w: update the inventory by hand", r.NewVMID, r.NewAddr, err)
	}
	if err := f.DB.AddReplacement(ctx, Replacement{Host: h.Name, Snapshot: snap.ID, OldAddr: r.OldAddr, OldVMID: r.OldVMID,
		NewAddr: r.NewAddr, NewVMID: r.NewVMID, At: time.Now()}); err != nil {
		return r, err
	}
	if err := fsutil.WriteFile(inv.Path, []byte(text), 0o644); err != nil {
		return r, err
	}
	next, err := LoadInventory(inv.Path)
	if err != nil {
		return r, err
	}
	sel, err := next.Select([]string{h.Name}, nil)
	if err != nil {
		return r, err
	}
	// The new host, checked from here: ssh reaches its slipway, which
	// says it is healthy, and the external checks pass.
	deadline := time.Now().Add(2 * time.Minute)
	released := false
	for {
		st := f.Status(ctx, sel[0])
		if st.Error == "" && !released && snap.Rollout != 0 {
			// A snapshot taken in a rollout holds the hold of that
			// rollout, which is over: the new VM must not keep it.
			_, err := f.remote(ctx, sel[0], nil, nil, "lock", "release", "--key", holdKey(f.Cfg.App, snap.Rollout), "--wait")
			released = err == nil
		}
		err := f.statusErr(st)
		if err == nil {
			err = f.check(ctx, sel[0])
		}
		if err == nil {
			r.Status = &st
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Status, r.Error = &st, err.Error()
			return r, fmt.Errorf("the new VM %s at %s: %w", r.NewVMID, r.NewAddr, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (f *Fleet) statusErr(st HostStatus) error {
	switch {
	case st.Error != "":
		return errors.New(st.Error)
	case !st.Healthy:
		return errors.New("unhealthy")
	}
	return nil
}

// Replace rewrites the inventory's entry of host: its address and VM id
// become the new ones, wherever the entry gives them. It returns the new
// text, which it does not write.
func (inv *Inventory) Replace(host, oldAddr, newAddr, oldVM, newVM string) (string, error) {
	data, err := os.ReadFile(inv.Path)
	if err != nil {
		return "", err
	}
	lines := strings.Split(string(data), "\n")
	start, end := inv.entry(lines, host)
	if start < 0 {
		return "", fmt.Errorf("%s has no entry for %s", inv.Path, host)
	}
	swapped := 0
	swap := func(value string) string {
		if oldAddr != "" {
			value = replaceWord(value, oldAddr, newAddr)
		}
		if oldVM != "" {
			value = replaceWord(value, oldVM, newVM)
		}
		return value
	}
	for i := start; i < end; i++ {
		line := lines[i]
		if inv.format == formatINI {
			// The values of its key=value words; the host's name stays.
			name, rest, _ := strings.Cut(line, " ")
			line = name + " " + swap(rest)
		} else if i > start {
			// The values of its keys, not the line that names it.
			key, value, ok := strings.Cut(line, ":")
			if ok {
				line = key + ":" + swap(value)
			}
		}
		if line != lines[i] {
			swapped++
			lines[i] = line
		}
	}
	if swapped == 0 {
		return "", fmt.Errorf("%s's entry for %s does not give its address %s", inv.Path, host, oldAddr)
	}
	return strings.Join(lines, "\n"), nil
}

// replaceWord replaces old in line where it stands as a whole value (not
// inside a longer address: 10.0.0.1 in 10.0.0.12).
func replaceWord(line, old, new string) string {
	re := regexp.MustCompile(`(^|[^A-Za-z0-9.\-])` + regexp.QuoteMeta(old) + `($|[^A-Za-z0-9.\-])`)
	return re.ReplaceAllString(line, "${1}"+strings.ReplaceAll(new, "$", "$$")+"${2}")
}

// entry is the lines [start, end) of host's own entry: its host line in an
// INI inventory; its list item, or its mapping under a group's hosts, in
// YAML. start is -1 when there is none.
func (inv *Inventory) entry(lines []string, host string) (int, int) {
	if inv.format == formatINI {
		for i, line := range lines {
			f := strings.Fields(line)
			if len(f) > 1 && f[0] == host {
				return i, i + 1
			}
		}
		return -1, -1
	}
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	for i, line := range lines {
		trim := strings.TrimSpace(line)
		var own int
		switch {
		case inv.format == formatNative && (trim == "- name: "+host || trim == `- name: "`+host+`"` || trim == "- name: '"+host+"'"):
			own = indent(line) + 2
		case inv.format == formatAnsibleYAML && trim == host+":":
			own = indent(line) + 1
		default:
			continue
		}
		end := i + 1
		for end < len(lines) && (strings.TrimSpace(lines[end]) == "" || indent(lines[end]) >= own) {
			end++
		}
		if inv.format == formatAnsibleYAML && end == i+1 {
			continue // a mention in a group (web1:), not its variables
		}
		return i, end
	}
	return -1, -1
}
