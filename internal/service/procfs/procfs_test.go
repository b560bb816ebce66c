package procfs

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestParseStat(t *testing.T) {
	// fields 10 to 21, then 22 (starttime) = 4242, then more
	tail := " 0 0 0 0 0 0 0 0 20 0 1 0 4242 1000 100 18446744073709551615"
	tests := []struct {
		name    string
		in      string
		want    Stat
		wantErr bool
	}{
		{name: "plain", in: "123 (sleep) S 1 123 123 0 -1 4194560" + tail,
			want: Stat{PID: 123, PPID: 1, PGID: 123, SID: 123, State: 'S', StartTicks: 4242}},
		{name: "command name with spaces and parentheses", in: "77 (a) (b c)) Z 5 6 7 0 -1 4194560" + tail,
			want: Stat{PID: 77, PPID: 5, PGID: 6, SID: 7, State: 'Z', StartTicks: 4242}},
		{name: "truncated", in: "123 (sleep) S 1 123", wantErr: true},
		{name: "no name", in: "123 sleep S 1 123 123", wantErr: true},
		{name: "bad pid", in: "x (sleep) S 1 123 123 0 -1 4194560" + tail, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseStat error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("ParseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadStatOfThisProcess(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() || st.PGID != syscall.Getpgrp() || st.StartTicks == 0 || st.Gone() {
		t.Errorf("ReadStat(self) = %+v", st)
	}
	cmd, err := Cmdline(os.Getpid())
	if err != nil || !strings.HasPrefix(cmd, os.Args[0]) {
		t.Errorf("Cmdline(self) = %q, %v; want it to start with %q", cmd, err, os.Args[0])
	}
}

func TestReadStatOfAMissingProcess(t *testing.T) {
	if _, err := ReadStat(1 << 30); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ReadStat(missing) = %v, want ErrNoProcess", err)
	}
	if _, err := Cmdline(1 << 30); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Cmdline(missing) = %v, want ErrNoProcess", err)
	}
}

func TestGroup(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	pgid := cmd.Process.Pid
	for range 500 { // until sh has forked sleep, at most 5s
		members, err := Group(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) == 2 {
			for _, m := range members {
				if m.PGID != pgid {
					t.Errorf("member %+v not in group %d", m, pgid)
				}
			}
			return
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 10e6}, nil)
	}
	t.Fatalf("group %d never had two members", pgid)
}

func TestListeningSockets(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("listen %s: %v", addr, err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			inodes, err := ListeningInodes(port)
			if err != nil || len(inodes) != 1 {
				t.Fatalf("ListeningInodes(%d) = %v, %v; want one", port, inodes, err)
			}
			// sock_diag and /proc/net say the same.
			family, table := uint8(syscall.AF_INET), "tcp"
			if strings.HasPrefix(addr, "[") {
				family, table = syscall.AF_INET6, "tcp6"
			}
			diag, err := diagListeningInodes(family, port)
			if err != nil || !slices.Equal(diag, inodes) {
				t.Errorf("sock_diag: %v, %v; want %v", diag, err, inodes)
			}
			if proc, err := procListeningInodes(table, port); err != nil || !slices.Equal(proc, inodes) {
				t.Errorf("/proc/net/%s: %v, %v; want %v", table, proc, err, inodes)
			}
			holders, err := SocketHolders(inodes)
			if err != nil || !slices.Equal(holders, []int{os.Getpid()}) {
				t.Errorf("SocketHolders = %v, %v; want [%d]", holders, err, os.Getpid())
			}
			// An established connection on the port is not a listener.
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if inodes, err := ListeningInodes(port); err != nil || len(inodes) != 0 {
				t.Errorf("after Close: ListeningInodes = %v, %v; want none", inodes, err)
			}
			if diag, err := diagListeningInodes(family, port); err != nil || len(diag) != 0 {
				t.Errorf("after Close: sock_diag = %v, %v; want none", diag, err)
			}
		})
	}
}

// ParseStat must agree with a plain split of a real stat line (whose
// command name has no spaces).
func TestParseStatAgreesWithProc(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip(err)
	}
	f := strings.Fields(string(b))
	st, err := ParseStat(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := strconv.FormatUint(st.StartTicks, 10); got != f[21] {
		t.Errorf("StartTicks = %s, field 22 is %s", got, f[21])
	}
	if got := strconv.Itoa(st.SID); got != f[5] {
		t.Errorf("SID = %s, field 6 is %s", got, f[5])
	}
}

// BenchmarkListeningInodes: one look for a port's listeners, through
// sock_diag and through /proc/net/tcp.
func BenchmarkListeningInodes(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	port := ln.Addr().(*net.TCPAddr).Port
	b.Run("sock_diag", func(b *testing.B) {
		for b.Loop() {
			if got, err := diagListeningInodes(syscall.AF_INET, port); err != nil || len(got) != 1 {
				b.Fatal(got, err)
			}
		}
	})
	b.Run("proc", func(b *testing.B) {
		for b.Loop() {
			if got, err := procListeningInodes("tcp", port); err != nil || len(got) != 1 {
				b.Fatal(got, err)
			}
		}
	})
}
