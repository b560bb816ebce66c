// Package lock serialises deploys with flock(2) on run/deploy.lock. The file
// names its holder; the kernel drops the flock when a holder dies, so a
// crash never leaves a stale lock. A manual freeze is written into the file
// and outlives processes and reboots until it is released.
package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"golang.org/x/sys/unix"
)

// Holder says who holds, or froze, the lock.
type Holder struct {
	PID     int       `json:"pid,omitempty"`
	Host    string    `json:"host"`
	User    string    `json:"user,omitempty"`
	Trigger string    `json:"trigger,omitempty"`
	Started time.Time `json:"started"`
	// Frozen marks a manual lock (`slipway lock acquire -m`), or a hold.
	Frozen  bool   `json:"frozen,omitempty"`
	Message string `json:"message,omitempty"`
	// Key names a hold (`slipway lock hold`): a freeze that lets through
	// the deploys that carry its key, and that ends by itself at Expires
	// unless renewed. A fleet rollout holds its hosts so.
	Key     string    `json:"key,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// expired reports whether h is a hold whose time has run out: it then
// freezes nothing.
func (h Holder) expired(now time.Time) bool {
	return h.Frozen && !h.Expires.IsZero() && !now.Before(h.Expires)
}

func (h Holder) String() string {
	if h.Frozen && h.Key != "" {
		return fmt.Sprintf("held by %s@%s for %q until %s: %q", h.User, h.Host, h.Key, h.Expires.Format(time.RFC3339), h.Message)
	}
	if h.Frozen {
		return fmt.Sprintf("frozen by %s@%s since %s: %q", h.User, h.Host, h.Started.Format(time.RFC3339), h.Message)
	}
	return fmt.Sprintf("%s deploy, pid %d on %s, started %s", h.Trigger, h.PID, h.Host, h.Started.Format(time.RFC3339))
}

// NewHolder describes this process as the holder, for trigger.
func NewHolder(trigger string, now time.Time) Holder {
	host, _ := os.Hostname()
	h := Holder{PID: os.Getpid(), Host: host, Trigger: trigger, Started: now.UTC()}
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	return h
}

// ErrLocked is returned when another deploy holds the lock or deploys are frozen.
var ErrLocked = errors.New("locked")

// LockedError names the holder of the lock.
type LockedError struct{ Holder Holder }

func (e *LockedError) Error() string {
	if e.Holder.Frozen {
		return fmt.Sprintf("deploys are frozen (%s); run `slipway lock release` to unfreeze", e.Holder)
	}
	return fmt.Sprintf("another deploy holds the lock (%s); wait for it or use --wait", e.Holder)
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held deploy lock.
type Lock struct {
	f      *os.File
	frozen *Holder
}

// Frozen returns the manual freeze found when the lock was taken, if any.
func (l *Lock) Frozen() *Holder { return l.frozen }

// Acquire takes the lock at path for holder. With wait it blocks until the
// lock is free (or ctx ends); without, a held lock is a *LockedError at once.
// A frozen lock is reported as *LockedError unless allowFrozen, or unless
// it is a hold whose key is holder.Key. An expired hold is no freeze.
func Acquire(ctx context.Context, path string, holder Holder, wait, allowFrozen bool) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !wait {
			h, _ := read(f)
			_ = f.Close()
			return nil, &LockedError{Holder: h}
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	l := &Lock{f: f}
	if prev, err := read(f); err == nil && prev.Frozen && !prev.expired(time.Now()) {
		if !allowFrozen && (prev.Key == "" || prev.Key != holder.Key) {
			_ = f.Close()
			return nil, &LockedError{Holder: prev}
		}
		l.frozen = &prev
		return l, nil
	}
	if err := write(f, holder); err != nil {
		_ = f.Close()
		return nil, err
	}
	return l, nil
}

// Release clears the holder and drops the lock. A frozen lock keeps its freeze.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	var err error
	if l.frozen == nil {
		err = l.f.Truncate(0)
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// Freeze turns a held lock into a manual freeze that outlives this process.
func (l *Lock) Freeze(h Holder) error {
	h.Frozen = true
	h.PID = 0
	if err := write(l.f, h); err != nil {
		return err
	}
	l.frozen = &h
	return nil
}

// Unfreeze clears a manual freeze on a held lock.
func (l *Lock) Unfreeze() error {
	l.frozen = nil
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("unfreeze: %w", err)
	}
	return l.f.Sync()
}

// Status reads the lock file: its holder and whether a process holds it now.
func Status(path string) (h Holder, held bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, err
	}
	defer func() { _ = f.Close() }()
	h, _ = read(f)
	if h.expired(time.Now()) {
		h = Holder{}
	}
	// A shared lock succeeds only when no deploy holds the exclusive one.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return h, true, nil
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if !h.Frozen {
		h = Holder{}
	}
	return h, false, nil
}

func read(f *os.File) (Holder, error) {
	var h Holder
	buf := make([]byte, 64<<10)
	n, _ := f.ReadAt(buf, 0)
	if n == 0 {
		return h, errors.New("empty lock file")
	}
	err := json.Unmarshal(buf[:n], &h)
	return h, err
}

func write(f *os.File, h Holder) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("write lock holder: %w", err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("write lock holder: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write lock holder: %w", err)
	}
	return nil
}

// Freeze freezes deploys on file until Unfreeze: h, with its Message
// saying why, takes the lock and leaves it frozen. It fails at once while
// a deploy holds the lock.
func Freeze(ctx context.Context, file string, h Holder) error {
	held, err := Acquire(ctx, file, h, false, false)
	if err != nil {
		return err
	}
	defer func() { _ = held.Release() }()
	return held.Freeze(h)
}

// Unfreeze ends the freeze or hold on file (with key, only the hold of
// that key) and says what it did. With wait, it waits for a running
// deploy to finish first.
func Unfreeze(ctx context.Context, file string, h Holder, key string, wait bool) (string, error) {
	held, err := Acquire(ctx, file, h, wait, true)
	if err != nil {
		return "", err
	}
	defer func() { _ = held.Release() }()
	f := held.Frozen()
	switch {
	case f == nil:
		return "deploys were not frozen", nil
	case key != "" && f.Key != key:
		// Someone else's freeze or hold stays.
		return fmt.Sprintf("deploys were not held for %s: %s", key, f), nil
	}
	if err := held.Unfreeze(); err != nil {
		return "", err
	}
	return "deploys unfrozen", nil
}
