package service

import (
	"errors"
	"fmt"

	"github.com/slipway-dev/slipway/internal/service/procfs"
)

// PortOwner returns the process that listens on TCP port, IPv4 or IPv6, on
// any address: pid 0 when nothing listens. When several processes share the
// listening socket (a server and its forked workers) it returns the one that
// started first. When something listens but no visible process holds the
// socket (another user's process and slipway is not root), it returns pid 0
// and an error wrapping ErrOwnerUnknown.
func PortOwner(port int) (pid int, cmdline string, err error) {
	// A holder may exit between reading the socket table and its stat;
	// look again before saying its owner cannot be seen.
	for range 3 {
		inodes, err := procfs.ListeningInodes(port)
		if err != nil {
			return 0, "", fmt.Errorf("find owner of port %d: %w", port, err)
		}
		if len(inodes) == 0 {
			return 0, "", nil
		}
		holders, err := procfs.SocketHolders(inodes)
		if err != nil {
			return 0, "", fmt.Errorf("find owner of port %d: %w", port, err)
		}
		var first procfs.Stat
		for _, h := range holders {
			st, err := procfs.ReadStat(h)
			if err != nil {
				continue // exited since
			}
			if first.PID == 0 || st.StartTicks < first.StartTicks {
				first = st
			}
		}
		if first.PID == 0 {
			continue
		}
		cmdline, err = procfs.Cmdline(first.PID)
		if err != nil {
			cmdline = "?" // it exited just now; the pid still says who it was
		}
		return first.PID, cmdline, nil
	}
	return 0, "", fmt.Errorf("port %d: %w", port, ErrOwnerUnknown)
}

// CheckPort refuses a start of s while its port is held by a process that
// is not one of its own (ours reports those; nil means none is).
func CheckPort(s Spec, ours func(pid int) bool) error {
	if s.Port <= 0 {
		return nil
	}
	pid, cmdline, err := PortOwner(s.Port)
	switch {
	case errors.Is(err, ErrOwnerUnknown):
		return &PortHeldError{Service: s.Name, Port: s.Port}
	case err != nil:
		return fmt.Errorf("start %s: %w", s.Name, err)
	case pid != 0 && (ours == nil || !ours(pid)):
		return &PortHeldError{Service: s.Name, Port: s.Port, PID: pid, Command: cmdline}
	}
	return nil
}
