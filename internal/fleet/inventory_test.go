package fleet

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/config"
)

// The same fleet as an Ansible INI and an Ansible YAML inventory: groups
// become tags, group vars apply under the host's own, and the connection
// variables reach ssh.
func TestAnsibleInventories(t *testing.T) {
	for _, file := range []string{"hosts.ini", "hosts.yml"} {
		t.Run(file, func(t *testing.T) {
			inv, err := LoadInventory(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, h := range inv.Hosts {
				names = append(names, h.Name)
			}
			if !slices.Equal(names, []string{"web1", "web2", "web3"}) {
				t.Fatalf("hosts %v", names)
			}
			w1, w2, w3 := inv.Hosts[0], inv.Hosts[1], inv.Hosts[2]
			if w1.Dest != "10.0.0.11" || w1.User != "root" || w1.Values.VMID != "vm-111" || w1.Values.Addr != "10.0.0.11" {
				t.Errorf("web1: %+v", w1)
			}
			if !slices.Contains(w1.Tags, "canary") || !slices.Contains(w1.Tags, "web") {
				t.Errorf("web1 tags %v", w1.Tags)
			}
			if w2.Port != 2222 || w2.User != "deploy" || w2.Values.Vars["region"] != "eu-west" {
				t.Errorf("web2: %+v", w2)
			}
			if w3.Key != "/keys/web3" || !slices.Equal(w3.SSHArgs, []string{"-o", "ProxyJump=bastion", "-o", "StrictHostKeyChecking=no"}) {
				t.Errorf("web3 ssh: key %q args %q", w3.Key, w3.SSHArgs)
			}
			sel, err := inv.Select(nil, []string{"canary"})
			if err != nil || len(sel) != 1 || sel[0].Name != "web1" {
				t.Errorf("--tag canary: %v %v", sel, err)
			}
			if _, err := inv.Select([]string{"web9"}, nil); err == nil {
				t.Error("--hosts web9 (not in the inventory) was taken")
			}
		})
	}
}

func TestNativeInventory(t *testing.T) {
	inv, err := LoadInventory(filepath.Join("testdata", "fleet.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Hosts) != 2 || inv.Hosts[0].Dest != "root@10.0.0.11" || inv.Hosts[0].Values.Addr != "10.0.0.11" ||
		inv.Hosts[0].Values.URL != "http://10.0.0.11:8000" || inv.Hosts[1].Port != 2222 {
		t.Fatalf("%+v %+v", inv.Hosts[0], inv.Hosts[1])
	}
	_, err = LoadInventory(filepath.Join("testdata", "bad-key.yml"))
	if err == nil || !strings.Contains(err.Error(), "bad-key.yml:4:5") {
		t.Fatalf("an unknown key: %v (want its file:line:col)", err)
	}
}

func TestInventoryRefusesWhatSSHWouldMisread(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"an option as destination", "hosts:\n  - name: a\n    ssh: -oProxyCommand=touch /tmp/x\n"},
		{"a name with a space", "hosts:\n  - name: 'a b'\n"},
		{"twice", "hosts:\n  - name: a\n  - name: a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "inv.yml")
			if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadInventory(p); err == nil {
				t.Fatal("taken")
			}
		})
	}
}

// RemoteCommand's quoting, checked by a real POSIX shell: every word
// arrives as itself, whatever it holds.
func TestRemoteCommandQuoting(t *testing.T) {
	words := []string{"plain", "", "two words", "it's", `"double"`, "$HOME", "`id`", "$(id)", "a;b|c&d", "*", "~root",
		"back\\slash", "new\nline", "tab\there", "-n", "=", "@", "ünïcödé", "{a,b}", "!x", "#hash"}
	line, err := RemoteCommand(append([]string{"printf", "%s\\0"}, words...))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", line).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", line, err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, words) {
		t.Fatalf("through sh:\n got  %q\n want %q", got, words)
	}
	// No shell can be given a NUL: it is refused, not cut short.
	if _, err := RemoteCommand([]string{"a\x00b"}); err == nil {
		t.Error("a NUL was passed")
	}
}

func TestBatchSizes(t *testing.T) {
	for _, tc := range []struct {
		batches string
		total   int
		want    []int
	}{
		{"1,25%,100%", 10, []int{1, 2, 7}},
		{"1,50%,100%", 5, []int{1, 2, 2}},
		{"1,25%", 10, []int{1, 2, 2, 2, 2, 1}},
		{"10%", 5, []int{1, 1, 1, 1, 1}},
		{"1,100%", 1, []int{1}},
		{"3", 7, []int{3, 3, 1}},
	} {
		b, err := config.ParseBatches(tc.batches)
		if err != nil {
			t.Fatal(err)
		}
		if got := config.BatchSizes(b, tc.total); !slices.Equal(got, tc.want) {
			t.Errorf("%s of %d: %v, want %v", tc.batches, tc.total, got, tc.want)
		}
	}
	for _, bad := range []string{"0", "1,,2", "150%", "x", "-1"} {
		if _, err := config.ParseBatches(bad); err == nil {
			t.Errorf("batches %q taken", bad)
		}
	}
}
