// Package fleet rolls an app out across many hosts from the operator's
// machine. The hosts come from an inventory (slipway's own YAML, or an
// Ansible inventory in INI or YAML); each is reached with the system's ssh
// client and runs its own slipway, so every host keeps its atomic releases,
// lock, ledger and automatic rollback. The fleet adds the order (batches,
// a canary, halt or revert), checks from outside the hosts, and a ledger of
// rollouts on the operator's side.
package fleet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"mvdan.cc/sh/v3/shell"

	"github.com/slipway-dev/slipway/internal/config"
)

// Host is one host of the inventory.
type Host struct {
	Name string
	// Dest is the ssh destination: anything ssh accepts (user@host, an
	// alias of ~/.ssh/config).
	Dest    string
	Port    int
	User    string
	Key     string   // an identity file (-i)
	SSHArgs []string // more ssh options, as words
	Tags    []string
	Values  config.HostValues
}

// Inventory is the hosts, in the file's order.
type Inventory struct {
	Path   string
	Hosts  []*Host
	format int // formatNative, formatINI or formatAnsibleYAML
}

// Inventory formats.
const (
	formatNative = iota
	formatINI
	formatAnsibleYAML
)

// hostName is what a host's name may be: it appears in paths, ledger rows
// and ssh's ControlPath hash, never in a shell unquoted.
var hostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// LoadInventory reads an inventory: slipway's YAML (a top-level hosts
// list), an Ansible YAML inventory (groups at the top), or an Ansible INI
// inventory. Groups are tags.
func LoadInventory(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if len(data) > config.MaxSize {
		return nil, fmt.Errorf("%s: the inventory is over %d bytes", path, config.MaxSize)
	}
	inv := &Inventory{Path: path}
	switch {
	case isINI(path, data):
		inv.format = formatINI
		err = inv.parseINI(data)
	default:
		err = inv.parseYAML(data)
	}
	if err != nil {
		return nil, err
	}
	if len(inv.Hosts) == 0 {
		return nil, fmt.Errorf("%s: no hosts", path)
	}
	seen := map[string]bool{}
	for _, h := range inv.Hosts {
		if !hostName.MatchString(h.Name) {
			return nil, fmt.Errorf("%s: host %q: a name is letters, digits and ._- (at most 63)", path, h.Name)
		}
		if seen[h.Name] {
			return nil, fmt.Errorf("%s: host %q is listed twice", path, h.Name)
		}
		seen[h.Name] = true
		if h.Dest == "" {
			h.Dest = h.Name
		}
		if strings.HasPrefix(h.Dest, "-") || strings.ContainsAny(h.Dest, " \t\n\x00") {
			return nil, fmt.Errorf("%s: host %s: ssh destination %q is not a host name", path, h.Name, h.Dest)
		}
		if h.Values.Addr == "" {
			addr := h.Dest
			if _, after, ok := strings.Cut(addr, "@"); ok {
				addr = after
			}
			h.Values.Addr = addr
		}
		h.Values.Name = h.Name
		slices.Sort(h.Tags)
		h.Tags = slices.Compact(h.Tags)
	}
	return inv, nil
}

// Select returns the hosts named in names (all when empty) that carry
// every tag in tags, in inventory order. An unknown name is an error.
func (inv *Inventory) Select(names, tags []string) ([]*Host, error) {
	byName := map[string]*Host{}
	for _, h := range inv.Hosts {
		byName[h.Name] = h
	}
	for _, n := range names {
		if byName[n] == nil {
			return nil, fmt.Errorf("--hosts: %q is not in %s", n, inv.Path)
		}
	}
	var out []*Host
	for _, h := range inv.Hosts {
		if len(names) > 0 && !slices.Contains(names, h.Name) {
			continue
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return !slices.Contains(h.Tags, t) }) {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no host of the inventory matches --hosts and --tag")
	}
	return out, nil
}

func isINI(path string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ini", ".cfg", ".hosts":
		return true
	case ".yml", ".yaml":
		return false
	}
	// No telling extension: an INI inventory starts with a [group] or a
	// bare host line, never with "key:".
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || line == "---" {
			continue
		}
		return strings.HasPrefix(line, "[") || !strings.Contains(strings.Fields(line)[0], ":")
	}
	return false
}

// nativeHost is a host in slipway's own inventory format.
type nativeHost struct {
	Name    string            `yaml:"name"`
	SSH     string            `yaml:"ssh"`
	Port    int               `yaml:"port"`
	User    string            `yaml:"user"`
	Key     string            `yaml:"identity_file"`
	SSHArgs []string          `yaml:"ssh_args"`
	Tags    []string          `yaml:"tags"`
	Addr    string            `yaml:"addr"`
	URL     string            `yaml:"url"`
	VMID    string            `yaml:"vm_id"`
	Vars    map[string]string `yaml:"vars"`
}

func (inv *Inventory) parseYAML(data []byte) error {
	var top yaml.MapSlice
	if err := yaml.UnmarshalWithOptions(data, &top, yaml.UseOrderedMap()); err != nil {
		return inv.yamlError(err)
	}
	if len(top) == 1 && top[0].Key == "hosts" {
		if _, isList := top[0].Value.([]any); isList {
			var doc struct {
				Hosts []nativeHost `yaml:"hosts"`
			}
			if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict()); err != nil {
				return inv.yamlError(err)
			}
			for _, n := range doc.Hosts {
				if n.Name == "" {
					return fmt.Errorf("%s: a host without a name", inv.Path)
				}
				inv.Hosts = append(inv.Hosts, &Host{Name: n.Name, Dest: n.SSH, Port: n.Port, User: n.User, Key: n.Key,
					SSHArgs: n.SSHArgs, Tags: n.Tags,
					Values: config.HostValues{Addr: n.Addr, URL: n.URL, VMID: n.VMID, Vars: n.Vars}})
			}
			return nil
		}
	}
	// An Ansible YAML inventory: groups with hosts, children and vars.
	inv.format = formatAnsibleYAML
	a := newAnsible()
	for _, g := range top {
		if err := a.yamlGroup(fmt.Sprint(g.Key), g.Value, nil); err != nil {
			return fmt.Errorf("%s: %w", inv.Path, err)
		}
	}
	return a.into(inv)
}

func (inv *Inventory) yamlError(err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		p := ye.GetToken().Position
		return fmt.Errorf("%s:%d:%d: %s", inv.Path, p.Line, p.Column, ye.GetMessage())
	}
	return fmt.Errorf("%s: %w", inv.Path, err)
}

// ansible gathers an Ansible inventory's groups before hosts get their
// variables: group vars, then the host's own (which win).
type ansible struct {
	order     []string                     // hosts, as first seen
	hostVars  map[string]map[string]string // a host's own vars
	groups    map[string][]string          // group -> its hosts
	children  map[string][]string          // group -> child groups
	groupVars map[string]map[string]string
	groupSeq  []string // groups, as first seen (their vars apply in this order)
}

func newAnsible() *ansible {
	return &ansible{hostVars: map[string]map[string]string{}, groups: map[string][]string{},
		children: map[string][]string{}, groupVars: map[string]map[string]string{}}
}

func (a *ansible) group(name string) {
	if !slices.Contains(a.groupSeq, name) {
		a.groupSeq = append(a.groupSeq, name)
	}
}

func (a *ansible) host(group, name string, vars map[string]string) {
	if _, ok := a.hostVars[name]; !ok {
		a.order = append(a.order, name)
		a.hostVars[name] = map[string]string{}
	}
	for k, v := range vars {
		a.hostVars[name][k] = v
	}
	a.group(group)
	if !slices.Contains(a.groups[group], name) {
		a.groups[group] = append(a.groups[group], name)
	}
}

func (a *ansible) yamlGroup(name string, v any, parent *string) error {
	a.group(name)
	if parent != nil && !slices.Contains(a.children[*parent], name) {
		a.children[*parent] = append(a.children[*parent], name)
	}
	if v == nil {
		return nil
	}
	body, ok := v.(yaml.MapSlice)
	if !ok {
		return fmt.Errorf("group %s: expected a mapping of hosts, children and vars", name)
	}
	for _, item := range body {
		switch item.Key {
		case "hosts":
			hosts, _ := item.Value.(yaml.MapSlice)
			if item.Value != nil && hosts == nil {
				return fmt.Errorf("group %s: hosts: expected a mapping of host names", name)
			}
			for _, h := range hosts {
				vars, err := scalars(fmt.Sprintf("host %v", h.Key), h.Value)
				if err != nil {
					return err
				}
				a.host(name, fmt.Sprint(h.Key), vars)
			}
		case "children":
			kids, _ := item.Value.(yaml.MapSlice)
			for _, k := range kids {
				if err := a.yamlGroup(fmt.Sprint(k.Key), k.Value, &name); err != nil {
					return err
				}
			}
		case "vars":
			vars, err := scalars("group "+name+" vars", item.Value)
			if err != nil {
				return err
			}
			a.groupVars[name] = vars
		default:
			return fmt.Errorf("group %s: unknown key %v (want hosts, children or vars)", name, item.Key)
		}
	}
	return nil
}

// scalars reads a mapping of variables; values are kept as text.
func scalars(what string, v any) (map[string]string, error) {
	out := map[string]string{}
	if v == nil {
		return out, nil
	}
	m, ok := v.(yaml.MapSlice)
	if !ok {
		return nil, fmt.Errorf("%s: expected a mapping of variables", what)
	}
	for _, kv := range m {
		switch val := kv.Value.(type) {
		case yaml.MapSlice, []any:
			return nil, fmt.Errorf("%s: %v: only plain values are used", what, kv.Key)
		case nil:
			out[fmt.Sprint(kv.Key)] = ""
		default:
			out[fmt.Sprint(kv.Key)] = fmt.Sprint(val)
		}
	}
	return out, nil
}

// parseINI reads Ansible's INI format: [group] sections of host lines
// ("name key=value ..."), [group:vars] and [group:children].
func (inv *Inventory) parseINI(data []byte) error {
	a := newAnsible()
	section, kind := "ungrouped", ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		at := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", inv.Path, n, fmt.Sprintf(format, args...))
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return at("a section header is [group], [group:vars] or [group:children]")
			}
			section, kind, _ = strings.Cut(line[1:len(line)-1], ":")
			if kind != "" && kind != "vars" && kind != "children" {
				return at("[%s:%s]: want :vars or :children", section, kind)
			}
			a.group(section)
			continue
		}
		var words []string
		if kind != "vars" {
			var err error
			if words, err = shell.Fields(line, func(string) string { return "" }); err != nil || len(words) == 0 {
				return at("%v", cmpErr(err, "an empty line"))
			}
		}
		switch kind {
		case "children":
			a.group(words[0])
			a.children[section] = append(a.children[section], words[0])
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return at("want key=value")
			}
			if a.groupVars[section] == nil {
				a.groupVars[section] = map[string]string{}
			}
			a.groupVars[section][strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
		default:
			vars := map[string]string{}
			for _, w := range words[1:] {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					return at("%q: host variables are key=value", w)
				}
				vars[k] = v
			}
			a.host(section, words[0], vars)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", inv.Path, err)
	}
	return a.into(inv)
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// into makes the hosts: each with the vars of its groups (outer groups
// first) under its own, and its groups as tags.
func (a *ansible) into(inv *Inventory) error {
	// The groups a host is in, directly or through children.
	member := map[string][]string{}
	var visit func(group string, path []string)
	visit = func(group string, path []string) {
		if slices.Contains(path, group) {
			return // a cycle of children
		}
		path = append(path, group)
		for _, h := range a.groups[group] {
			for _, g := range path {
				if !slices.Contains(member[h], g) {
					member[h] = append(member[h], g)
				}
			}
		}
		for _, c := range a.children[group] {
			visit(c, path)
		}
	}
	for _, g := range a.groupSeq {
		visit(g, nil)
	}
	for _, name := range a.order {
		vars := map[string]string{}
		for k, v := range a.groupVars["all"] {
			vars[k] = v
		}
		for _, g := range a.groupSeq {
			if g != "all" && slices.Contains(member[name], g) {
				for k, v := range a.groupVars[g] {
					vars[k] = v
				}
			}
		}
		for k, v := range a.hostVars[name] {
			vars[k] = v
		}
		h := &Host{Name: name, Dest: vars["ansible_host"], User: vars["ansible_user"], Key: vars["ansible_ssh_private_key_file"]}
		h.Values = config.HostValues{Addr: vars["ansible_host"], URL: vars["url"], VMID: vars["vm_id"], Vars: map[string]string{}}
		if p := vars["ansible_port"]; p != "" {
			port, err := strconv.Atoi(p)
			if err != nil || port < 1 || port > 65535 {
				return fmt.Errorf("%s: host %s: ansible_port %q is not a port", inv.Path, name, p)
			}
			h.Port = port
		}
		if args := vars["ansible_ssh_common_args"]; args != "" {
			words, err := shell.Fields(args, func(string) string { return "" })
			if err != nil {
				return fmt.Errorf("%s: host %s: ansible_ssh_common_args: %w", inv.Path, name, err)
			}
			h.SSHArgs = words
		}
		for k, v := range vars {
			if !strings.HasPrefix(k, "ansible_") {
				h.Values.Vars[k] = v
			}
		}
		for _, g := range member[name] {
			if g != "all" && g != "ungrouped" {
				h.Tags = append(h.Tags, g)
			}
		}
		if h.Dest != "" && net.ParseIP(h.Dest) == nil && strings.ContainsAny(h.Dest, "@") {
			return fmt.Errorf("%s: host %s: ansible_host is an address, without a user (use ansible_user)", inv.Path, name)
		}
		inv.Hosts = append(inv.Hosts, h)
	}
	return nil
}

func cmpErr(err error, what string) error {
	if err != nil {
		return err
	}
	return errors.New(what)
}
