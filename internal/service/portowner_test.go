package service

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPortOwnerFree(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if pid, cmd, err := PortOwner(port); pid != 0 || cmd != "" || err != nil {
		t.Errorf("PortOwner(free port) = %d, %q, %v", pid, cmd, err)
	}
}

func TestPortOwnerIsThisProcess(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("listen %s: %v", addr, err)
			}
			t.Cleanup(func() { _ = ln.Close() })
			pid, cmd, err := PortOwner(ln.Addr().(*net.TCPAddr).Port)
			if err != nil || pid != os.Getpid() || !strings.Contains(cmd, filepath.Base(os.Args[0])) {
				t.Errorf("PortOwner = %d, %q, %v; want %d, %s", pid, cmd, err, os.Getpid(), os.Args[0])
			}
		})
	}
}

// A listening socket shared with a child (as a pre-forking server does) is
// owned by whichever process started first.
func TestPortOwnerSharedSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	child := exec.Command("sleep", "30")
	child.ExtraFiles = []*os.File{f}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	pid, _, err := PortOwner(ln.Addr().(*net.TCPAddr).Port)
	if err != nil || pid != os.Getpid() {
		t.Errorf("PortOwner = %d, %v; want the first holder %d, not the child %d", pid, err, os.Getpid(), child.Process.Pid)
	}
}
