// Package procfs reads the few facts slipway needs about processes from
// Linux's /proc: who a process is (pid plus start time, which survives pid
// reuse), which group and session it belongs to, and whether it is a zombie.
// Sockets are in socket.go.
package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Root is where procfs is mounted.
const Root = "/proc"

// ErrNoProcess is returned when a process does not exist (any more).
var ErrNoProcess = errors.New("no such process")

// errESRCH is what reading a file of a process that exits mid-read returns.
var errESRCH error = syscall.ESRCH

// Stat is what slipway reads from /proc/PID/stat.
type Stat struct {
	PID, PPID, PGID, SID int
	// State is the one-letter state: R, S, D, T, Z (zombie), X (dead), ...
	State byte
	// StartTicks is field 22, the start time in clock ticks since boot.
	// With PID it names one process: a reused pid has a later start.
	StartTicks uint64
}

// Gone reports whether the process has exited and only waits to be reaped.
func (s Stat) Gone() bool { return s.State == 'Z' || s.State == 'X' }

// ReadStat reads /proc/PID/stat. It returns an error wrapping ErrNoProcess
// when the process does not exist.
func ReadStat(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", Root, pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errESRCH) {
			return Stat{}, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		return Stat{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return ParseStat(string(b))
}

// ParseStat parses the content of a /proc/PID/stat file.
func ParseStat(s string) (Stat, error) {
	// "pid (comm) state ppid pgrp session ...": comm may hold spaces and
	// parentheses, so the fixed fields start after the last ')'.
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("parse stat %q: no command name", trim(s))
	}
	var st Stat
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return Stat{}, fmt.Errorf("parse stat %q: pid: %w", trim(s), err)
	}
	st.PID = pid
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("parse stat %q: too few fields", trim(s))
	}
	st.State = f[0][0]
	ints := []*int{&st.PPID, &st.PGID, &st.SID}
	for i, p := range ints {
		if *p, err = strconv.Atoi(f[1+i]); err != nil {
			return Stat{}, fmt.Errorf("parse stat %q: field %d: %w", trim(s), 4+i, err)
		}
	}
	if st.StartTicks, err = strconv.ParseUint(f[22-3], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("parse stat %q: field 22: %w", trim(s), err)
	}
	return st, nil
}

// Cmdline returns the command line of pid with its arguments joined by
// spaces; for a kernel thread or a zombie, whose cmdline is empty, it
// returns the name from stat in brackets.
func Cmdline(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cmdline", Root, pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errESRCH) {
			return "", fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		return "", fmt.Errorf("read cmdline of pid %d: %w", pid, err)
	}
	cmd := strings.TrimSpace(strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	if cmd != "" {
		return cmd, nil
	}
	sb, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", Root, pid))
	if err != nil {
		return "", nil
	}
	s := string(sb)
	if i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')'); i >= 0 && j > i {
		return "[" + s[i+1:j] + "]", nil
	}
	return "", nil
}

// PIDs lists the processes that exist now.
func PIDs() ([]int, error) {
	ents, err := os.ReadDir(Root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Group returns the processes of process group pgid that have not exited
// (zombies are left out).
func Group(pgid int) ([]Stat, error) {
	pids, err := PIDs()
	if err != nil {
		return nil, err
	}
	var out []Stat
	for _, pid := range pids {
		st, err := ReadStat(pid)
		if err != nil {
			continue // exited while we looked, or not ours to read
		}
		if st.PGID == pgid && !st.Gone() {
			out = append(out, st)
		}
	}
	return out, nil
}

func trim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// HasEnv reports whether the environment pid started with holds every one
// of entries (KEY=VALUE). A process that cannot be read does not.
func HasEnv(pid int, entries []string) bool {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/environ", Root, pid))
	if err != nil {
		return false
	}
	have := make(map[string]bool)
	for _, kv := range strings.Split(string(b), "\x00") {
		have[kv] = true
	}
	for _, e := range entries {
		if !have[e] {
			return false
		}
	}
	return true
}
