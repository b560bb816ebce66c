package process

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-dev/slipway/internal/service/procfs"
)

const (
	// pollInterval is how often Stop looks whether the group is gone.
	pollInterval = 20 * time.Millisecond
	// killWait bounds the wait after SIGKILL.
	killWait = 5 * time.Second
)

// observed is what /proc says about a recorded service.
type observed struct {
	// leader is true when the recorded pid is alive, not a zombie, and the
	// same process that was started (its start time matches).
	leader bool
	// members are the processes of its group that have not exited, found
	// only when the leader has: a shell's children after the shell crashed.
	members []procfs.Stat
	// why is set when the leader is not running, for State.Detail.
	why string
}

// observe finds out whether the service recorded in r still runs.
//
// The leader proves who the group is: while it exists with the recorded
// start time, the group number is ours. When the pid is gone, processes
// left in the group are its leftovers: the kernel does not hand out a
// number as a new pid while a group of that number exists. When the pid
// was reused, the old group is gone for the same reason.
func observe(r record) (observed, error) {
	st, err := procfs.ReadStat(r.PID)
	switch {
	case errors.Is(err, procfs.ErrNoProcess):
		members, err := leftovers(r)
		return observed{members: members, why: fmt.Sprintf("pid %d has exited", r.PID)}, err
	case err != nil:
		return observed{}, err
	case st.StartTicks != r.StartTicks:
		return observed{why: fmt.Sprintf("pid %d is now another process", r.PID)}, nil
	}
	if st.Gone() {
		members, err := procfs.Group(r.PGID)
		return observed{members: members, why: fmt.Sprintf("pid %d has exited", r.PID)}, err
	}
	// The leader runs: that is all a caller needs to know (Stop ends the
	// whole group anyway), and it spares a scan of every process.
	return observed{leader: true}, nil
}

// leftovers are the processes still in r's group and session after its
// leader exited, started no earlier than it.
func leftovers(r record) ([]procfs.Stat, error) {
	all, err := procfs.Group(r.PGID)
	if err != nil {
		return nil, err
	}
	var out []procfs.Stat
	for _, st := range all {
		if st.SID == r.PGID && st.StartTicks >= r.StartTicks {
			out = append(out, st)
		}
	}
	return out, nil
}

// running reports whether any process of the service is alive.
func (o observed) running() bool { return o.leader || len(o.members) > 0 }

// groupGone reports whether process group pgid has no live process left;
// zombies waiting for their parent count as gone.
func groupGone(pgid int) (bool, error) {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return true, nil
	}
	members, err := procfs.Group(pgid)
	return len(members) == 0, err
}

// signalGroup sends sig to every process of group pgid; a group that is
// already gone is not an error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send %s to process group %d: %w", sig, pgid, err)
	}
	return nil
}

// waitGroupGone polls until group pgid is gone, the timeout passes (false)
// or ctx ends (its error).
func waitGroupGone(ctx context.Context, pgid int, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	// The group's leader (pid pgid) is almost always the service itself:
	// its pidfd says the moment it exits, where polling would see it up to
	// a poll later. The rest of the group is then polled as before.
	if err := waitExit(ctx, pgid, deadline); err != nil {
		return false, err
	}
	// Most services exit within milliseconds of SIGTERM: look again soon,
	// then every pollInterval.
	wait := pollInterval / 4
	for {
		gone, err := groupGone(pgid)
		if err != nil || gone {
			return gone, err
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, pollInterval)
	}
}

// waitExit waits until process pid exits, deadline passes or ctx ends (its
// error). A process that is gone already, or a kernel without pidfds, is
// not waited for.
func waitExit(ctx context.Context, pid int, deadline time.Time) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	defer func() { _ = unix.Close(fd) }()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		// In slices, so that a cancelled ctx is seen within 50 ms.
		ms := int(min(left, 50*time.Millisecond)/time.Millisecond) + 1
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return nil
		}
		if n > 0 {
			return nil
		}
	}
}

// terminate stops group pgid: SIGTERM, up to timeout for every member to
// exit, then SIGKILL. When ctx ends first it kills at once and returns the
// context's error once the group is gone. A supervised group's SIGTERM goes
// to its supervisor (the leader), which passes it on to the group once:
// every process of the service gets exactly one, as from systemd.
func terminate(ctx context.Context, pgid int, timeout time.Duration) error {
	var err error
	if isSupervisor(pgid) {
		err = syscall.Kill(pgid, syscall.SIGTERM)
		if errors.Is(err, syscall.ESRCH) {
			err = signalGroup(pgid, syscall.SIGTERM) // its leftovers
		}
	} else {
		err = signalGroup(pgid, syscall.SIGTERM)
	}
	if err != nil {
		return err
	}
	gone, err := waitGroupGone(ctx, pgid, timeout)
	ctxErr := ctx.Err()
	if err != nil && ctxErr == nil {
		return err // reading /proc failed
	}
	if gone {
		return nil
	}
	if err := signalGroup(pgid, syscall.SIGKILL); err != nil {
		return err
	}
	// SIGKILL cannot be refused; the wait is for the kernel to tear the
	// processes down, and is bounded even when ctx has ended.
	gone, err = waitGroupGone(context.Background(), pgid, killWait)
	if err != nil {
		return err
	}
	if !gone {
		return fmt.Errorf("process group %d is still there %s after SIGKILL (a process stuck in the kernel, state D?)", pgid, killWait)
	}
	return ctxErr
}
