package config

import (
	"cmp"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/slipway-dev/slipway/internal/snapshot"
)

// Fleet is how `slipway fleet` rolls the app out across hosts from the
// operator's machine. A host ignores it.
type Fleet struct {
	// Inventory is the inventory file used when -i is not given, relative
	// to this file.
	Inventory string `yaml:"inventory"`
	// Config is where the config goes on each host; Binary is slipway's
	// path there.
	Config string `yaml:"config"`
	Binary string `yaml:"binary"`
	// Batches is the rollout's batch sizes, Ansible's serial list: "1,25%,100%".
	Batches string `yaml:"batches"`
	// MaxFail is how many hosts (N, or N% of those selected) may fail
	// before the rollout stops starting hosts.
	MaxFail string `yaml:"max_fail"`
	// OnFail is what a stopped rollout does: halt or revert.
	OnFail string `yaml:"on_fail"`
	// Pause is the soak after each batch, in which every updated host must
	// stay healthy.
	Pause Duration `yaml:"pause"`
	// Connections caps the ssh connections being set up at once.
	Connections int `yaml:"connections"`
	// SSHPersist is how long a host's master ssh connection stays open
	// after a fleet command's last use of it, for the next command.
	SSHPersist Duration `yaml:"ssh_persist"`
	// HoldTTL is how long a host stays held if the operator's slipway
	// dies mid-rollout.
	HoldTTL Duration `yaml:"hold_ttl"`
	// Checks run from the operator's machine against each host after its
	// deploy; their URLs are templates of the host's values.
	Checks []FleetCheck `yaml:"checks"`
	// Snapshot takes VM snapshots from the operator's side, with the
	// cloud's own commands.
	Snapshot *FleetSnapshot `yaml:"snapshot"`
}

// FleetSnapshot is the operator's VM snapshot commands: templates as the
// host's command provider has them ({{.VMID}}, {{.ID}}, {{.Label}},
// {{.App}}, {{.Commit}}), each word filled in and run as an argv.
type FleetSnapshot struct {
	Create    string `yaml:"create"`
	IDPattern string `yaml:"id_pattern"`
	// Restore makes a new VM from a snapshot; its output names the new
	// VM's id (NewVMPattern) and address (NewAddrPattern).
	Restore        string   `yaml:"restore"`
	NewVMPattern   string   `yaml:"new_vm_pattern"`
	NewAddrPattern string   `yaml:"new_addr_pattern"`
	PostDeploy     bool     `yaml:"post_deploy"`
	Timeout        Duration `yaml:"timeout"`
}

// FleetCheck is an external check: an HTTP request from outside the host.
type FleetCheck struct {
	Name         string   `yaml:"name"`
	URL          string   `yaml:"url"`
	ExpectStatus int      `yaml:"expect_status"`
	ExpectBody   string   `yaml:"expect_body"`
	Timeout      Duration `yaml:"timeout"`
}

// HostValues are what a fleet template may use of a host: {{.Name}},
// {{.Addr}}, {{.URL}}, {{.VMID}} and {{.Vars.KEY}}.
type HostValues struct {
	Name, Addr, URL, VMID string
	Vars                  map[string]string
}

// FleetTemplate parses a template of a host's values, refusing other
// placeholders.
func FleetTemplate(text string) (*template.Template, error) {
	t, err := template.New("").Option("missingkey=zero").Parse(text)
	if err != nil {
		return nil, err
	}
	if err := t.Execute(&strings.Builder{}, HostValues{}); err != nil {
		return nil, fmt.Errorf("unknown placeholder (use {{.Name}}, {{.Addr}}, {{.URL}}, {{.VMID}} or {{.Vars.KEY}})")
	}
	return t, nil
}

// Fleet defaults.
const (
	DefaultFleetConfig       = "/etc/slipway/slipway.yml"
	DefaultFleetBinary       = "/usr/local/bin/slipway"
	DefaultBatches           = "1,100%"
	DefaultConnections       = 10
	DefaultHoldTTL           = 10 * time.Minute
	DefaultSSHPersist        = 5 * time.Minute
	DefaultFleetCheckTimeout = 10 * time.Second
)

// Amount is a count of hosts: N, or N% of those selected.
type Amount struct {
	N       int
	Percent bool
}

// Of is the number of hosts a out of total means: a percentage rounds
// down, but a batch is at least 1.
func (a Amount) Of(total int) int {
	if !a.Percent {
		return a.N
	}
	return total * a.N / 100
}

func (a Amount) String() string {
	if a.Percent {
		return strconv.Itoa(a.N) + "%"
	}
	return strconv.Itoa(a.N)
}

// ParseAmount parses "N" or "N%".
func ParseAmount(s string) (Amount, error) {
	s = strings.TrimSpace(s)
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || (pct && n > 100) {
		return Amount{}, fmt.Errorf("%q: want a number of hosts (N) or a percentage (N%%, up to 100%%)", s)
	}
	return Amount{N: n, Percent: pct}, nil
}

// ParseBatches parses a batch list, "1,25%,100%": each entry a number of
// hosts or a percentage of those selected, none 0.
func ParseBatches(s string) ([]Amount, error) {
	var out []Amount
	for _, f := range strings.Split(s, ",") {
		a, err := ParseAmount(f)
		if err != nil {
			return nil, fmt.Errorf("batches: %w", err)
		}
		if a.N == 0 {
			return nil, fmt.Errorf("batches: %q: a batch has at least one host", strings.TrimSpace(f))
		}
		out = append(out, a)
	}
	return out, nil
}

// BatchSizes splits total hosts into batches as Ansible's serial does:
// each entry in turn (a percentage at least 1), the last one repeated
// until every host has a batch.
func BatchSizes(batches []Amount, total int) []int {
	var sizes []int
	for left, i := total, 0; left > 0; i++ {
		a := batches[min(i, len(batches)-1)]
		n := min(max(a.Of(total), 1), left)
		sizes = append(sizes, n)
		left -= n
	}
	return sizes
}

// ApplyFleetDefaults fills in what a fleet section leaves out.
func ApplyFleetDefaults(f *Fleet) error {
	f.Batches = cmp.Or(f.Batches, DefaultBatches)
	f.MaxFail = cmp.Or(f.MaxFail, "0")
	f.OnFail = cmp.Or(f.OnFail, "halt")
	f.Config = cmp.Or(f.Config, DefaultFleetConfig)
	f.Binary = cmp.Or(f.Binary, DefaultFleetBinary)
	if f.Connections == 0 {
		f.Connections = DefaultConnections
	}
	if f.HoldTTL.D() == 0 {
		f.HoldTTL = Duration(DefaultHoldTTL)
	}
	if f.SSHPersist.D() == 0 {
		f.SSHPersist = Duration(DefaultSSHPersist)
	}
	return nil
}

func (v *validator) fleet() error {
	f := v.c.Fleet
	if f == nil {
		return nil
	}
	p := keyPath{"fleet"}
	if f.Batches != "" {
		if _, err := ParseBatches(f.Batches); err != nil {
			return v.ix.errorf(p.key("batches"), "%v", err)
		}
	}
	if f.MaxFail != "" {
		if _, err := ParseAmount(f.MaxFail); err != nil {
			return v.ix.errorf(p.key("max_fail"), "%v", err)
		}
	}
	switch f.OnFail {
	case "", "halt", "revert":
	default:
		return v.ix.errorf(p.key("on_fail"), "%q: use halt or revert", f.OnFail)
	}
	if f.Connections < 0 {
		return v.ix.errorf(p.key("connections"), "must be 1 or more")
	}
	if f.SSHPersist.D() < 0 {
		return v.ix.errorf(p.key("ssh_persist"), "must be positive")
	}
	if err := ApplyFleetDefaults(f); err != nil {
		return err
	}
	if sn := f.Snapshot; sn != nil {
		sp := p.key("snapshot")
		if sn.Create == "" && sn.Restore == "" {
			return v.ix.errorf(sp, "needs create (and id_pattern), restore (and new_vm_pattern, new_addr_pattern), or both")
		}
		for _, t := range []struct{ key, text string }{{"create", sn.Create}, {"restore", sn.Restore}} {
			if t.text == "" {
				continue
			}
			if _, err := snapshot.ParseTemplate(t.text); err != nil {
				return v.ix.errorf(sp.key(t.key), "%v", err)
			}
		}
		for _, r := range []struct {
			key, pattern, with, needed string
		}{{"id_pattern", sn.IDPattern, sn.Create, "create"}, {"new_vm_pattern", sn.NewVMPattern, sn.Restore, "restore"}, {"new_addr_pattern", sn.NewAddrPattern, sn.Restore, "restore"}} {
			if r.with == "" {
				continue
			}
			if r.pattern == "" {
				return v.missing(sp, r.key, "a regular expression that finds it in "+r.needed+"'s output")
			}
			if _, err := regexp.Compile(r.pattern); err != nil {
				return v.ix.errorf(sp.key(r.key), "%v", err)
			}
		}
		if sn.Timeout.D() == 0 {
			sn.Timeout = Duration(snapshot.DefaultTimeout)
		}
	}
	for i := range f.Checks {
		c := &f.Checks[i]
		cp := p.key("checks").index(i)
		if c.URL == "" {
			return v.missing(cp, "url", "the URL to check from outside the host, a template such as {{.URL}}/health")
		}
		if _, err := FleetTemplate(c.URL); err != nil {
			return v.ix.errorf(cp.key("url"), "%v", err)
		}
		if c.ExpectStatus == 0 {
			c.ExpectStatus = 200
		}
		if err := v.status(cp.key("expect_status"), c.ExpectStatus); err != nil {
			return err
		}
		if c.Timeout.D() == 0 {
			c.Timeout = Duration(DefaultFleetCheckTimeout)
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("check %d", i+1)
		}
	}
	return nil
}
