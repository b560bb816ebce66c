package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Replace gives a restored host its new address and VM id, in each
// inventory format, and touches no other host (10.0.0.1 is not a part of
// 10.0.0.12).
func TestReplace(t *testing.T) {
	for _, file := range []string{"hosts.ini", "hosts.yml", "fleet.yml"} {
		t.Run(file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), file)
			if err := os.WriteFile(p, src, 0o644); err != nil {
				t.Fatal(err)
			}
			inv, err := LoadInventory(p)
			if err != nil {
				t.Fatal(err)
			}
			text, err := inv.Replace("web2", "10.0.0.12", "10.0.0.1", "vm-112", "vm-new")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			after, err := LoadInventory(p)
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			w1, w2 := after.Hosts[0], after.Hosts[1]
			if w2.Values.Addr != "10.0.0.1" || (file != "fleet.yml" && w2.Values.VMID != "vm-new") {
				t.Errorf("web2 after the restore: %+v\n%s", w2.Values, text)
			}
			if w1.Values.Addr != "10.0.0.11" || w1.Values.VMID != inv.Hosts[0].Values.VMID {
				t.Errorf("web1 changed: %+v", w1.Values)
			}
			if strings.Count(text, "\n") != strings.Count(string(src), "\n") {
				t.Errorf("lines added or lost:\n%s", text)
			}
			if _, err := inv.Replace("web9", "x", "y", "", ""); err == nil {
				t.Error("a host not in the inventory was replaced")
			}
		})
	}
}

func TestRollbackTarget(t *testing.T) {
	a, b, c := "aaaa1111", "bbbb2222", "cccc3333"
	all := func(cur string, good ...string) HostStatus {
		return HostStatus{Current: cur, Safe: cur, Healthy: true, Good: good}
	}
	for _, tc := range []struct {
		name string
		sts  []HostStatus
		to   string
		want string
		err  string
	}{
		{"every host on c: back to b", []HostStatus{all(c, c, b, a), all(c, c, b, a)}, "", b, ""},
		{"halted half way: where the rest are", []HostStatus{all(c, c, b, a), all(b, b, a)}, "", b, ""},
		{"--to a prefix every host keeps", []HostStatus{all(c, c, b, a), all(b, b, a)}, "aaaa", a, ""},
		{"--to a commit one host lacks", []HostStatus{{Host: "h1", Good: []string{c, b}}, {Host: "h2", Good: []string{b}}}, "cccc", "", "h2"},
		{"nothing in common", []HostStatus{all(c, c), all(b, b)}, "", "", "no good release in common"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RollbackTarget(tc.sts, tc.to)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("%q, %v; want an error naming %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("%q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
