package lock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles as the lock-holding child process of the crash tests:
// SLIPWAY_LOCK_HELPER picks what the child does with the lock at
// SLIPWAY_LOCK_PATH.
func TestMain(m *testing.M) {
	switch os.Getenv("SLIPWAY_LOCK_HELPER") {
	case "":
		os.Exit(m.Run())
	case "hold":
		// Take the lock, start a long-running "service" as a deploy does,
		// say so, and sleep until killed.
		path := os.Getenv("SLIPWAY_LOCK_PATH")
		if _, err := Acquire(context.Background(), path, Holder{PID: os.Getpid(), Host: "child", Trigger: "push", Started: time.Now()}, false, false); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		svc := exec.Command("sleep", "30")
		if err := svc.Start(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("held", svc.Process.Pid)
		time.Sleep(60 * time.Second)
		os.Exit(0)
	case "freeze":
		// Take the lock, freeze it, and exit without releasing it.
		path := os.Getenv("SLIPWAY_LOCK_PATH")
		l, err := Acquire(context.Background(), path, Holder{PID: os.Getpid(), Host: "child", Started: time.Now()}, false, false)
		if err == nil {
			err = l.Freeze(Holder{Host: "child", User: "ops", Message: "incident 42", Started: time.Now()})
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(2)
}

func lockPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "deploy.lock")
}

func me(trigger string) Holder {
	return Holder{PID: os.Getpid(), Host: "test", User: "tester", Trigger: trigger, Started: time.Now().UTC().Truncate(time.Second)}
}

func mustAcquire(t *testing.T, path string, h Holder) *Lock {
	t.Helper()
	l, err := Acquire(t.Context(), path, h, false, false)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	t.Cleanup(func() { _ = l.Release() })
	return l
}

// lockedBy asserts err is a *LockedError (and ErrLocked) and returns its holder.
func lockedBy(t *testing.T, err error) Holder {
	t.Helper()
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err = %v; want ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("err = %T %v; want *LockedError", err, err)
	}
	return le.Holder
}

func TestAcquireRelease(t *testing.T) {
	path := lockPath(t)
	h := me("push")
	l := mustAcquire(t, path, h)

	got, held, err := Status(path)
	if err != nil || !held {
		t.Fatalf("Status while held = %v, %v; want held", held, err)
	}
	if got.PID != h.PID || got.Trigger != "push" || !got.Started.Equal(h.Started) {
		t.Errorf("Status holder = %+v; want %+v", got, h)
	}

	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if got, held, err := Status(path); err != nil || held || got != (Holder{}) {
		t.Errorf("Status after release = %+v, %v, %v; want no holder, not held", got, held, err)
	}
	// The lock can be taken again at once.
	mustAcquire(t, path, me("manual"))
}

func TestReleaseNil(t *testing.T) {
	var l *Lock
	if err := l.Release(); err != nil {
		t.Errorf("nil Release = %v", err)
	}
}

func TestSecondAcquireNamesHolder(t *testing.T) {
	path := lockPath(t)
	first := me("webhook")
	mustAcquire(t, path, first)

	start := time.Now()
	l, err := Acquire(t.Context(), path, Holder{PID: 1, Trigger: "manual"}, false, false)
	if l != nil {
		t.Fatal("second Acquire returned a lock")
	}
	if time.Since(start) > time.Second {
		t.Errorf("Acquire without wait took %s", time.Since(start))
	}
	h := lockedBy(t, err)
	if h.PID != os.Getpid() || h.Trigger != "webhook" {
		t.Errorf("holder = %+v; want pid %d, webhook", h, os.Getpid())
	}
	msg := err.Error()
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "webhook", "--wait"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestAcquireWaitsForRelease(t *testing.T) {
	path := lockPath(t)
	first, err := Acquire(t.Context(), path, me("first"), false, false)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var second *Lock
	go func() {
		var err error
		second, err = Acquire(t.Context(), path, me("second"), true, false)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("waiting Acquire returned while the lock was held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiting Acquire: %v", err)
		}
		t.Cleanup(func() { _ = second.Release() })
	case <-time.After(3 * time.Second):
		t.Fatal("waiting Acquire did not get the lock after release")
	}
	if h, held, _ := Status(path); !held || h.Trigger != "second" {
		t.Errorf("Status = %+v, %v; want held by second", h, held)
	}
}

func TestAcquireWaitCanceled(t *testing.T) {
	path := lockPath(t)
	mustAcquire(t, path, me("first"))
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	l, err := Acquire(ctx, path, me("second"), true, false)
	if l != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, %v; want context.Canceled", l, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Acquire returned %s after cancel", d)
	}
	// The holder is untouched.
	if h, held, _ := Status(path); !held || h.Trigger != "first" {
		t.Errorf("Status = %+v, %v; want held by first", h, held)
	}
}

func TestAcquireMissingDir(t *testing.T) {
	_, err := Acquire(t.Context(), filepath.Join(t.TempDir(), "nope", "deploy.lock"), me("x"), false, false)
	if err == nil || errors.Is(err, ErrLocked) {
		t.Errorf("Acquire in a missing dir = %v; want an open error", err)
	}
}

// startChild runs this test binary as a helper process doing mode with the
// lock at path, and returns once it has printed its first line.
func startChild(t *testing.T, mode, path string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SLIPWAY_LOCK_HELPER="+mode, "SLIPWAY_LOCK_PATH="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		return cmd, s
	case <-time.After(5 * time.Second):
		t.Fatal("helper process did not report")
	}
	return nil, ""
}

// The kernel drops a flock when its holder dies: a deploy killed with -9
// leaves no lock behind, even while a service it started still runs.
func TestKilledHolderLeavesNoLock(t *testing.T) {
	path := lockPath(t)
	child, line := startChild(t, "hold", path)
	svcPID, err := strconv.Atoi(strings.TrimPrefix(line, "held "))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(svcPID, syscall.SIGKILL) })
	pid := child.Process.Pid

	h, held, err := Status(path)
	if err != nil || !held || h.PID != pid {
		t.Fatalf("Status = %+v, %v, %v; want held by pid %d", h, held, err, pid)
	}
	_, err = Acquire(t.Context(), path, me("manual"), false, false)
	if got := lockedBy(t, err); got.PID != pid {
		t.Errorf("LockedError names pid %d; want the child's %d", got.PID, pid)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", pid)) {
		t.Errorf("error %q does not name pid %d", err, pid)
	}

	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = child.Wait()
	// The service it started lives on, and must not keep the lock.
	if err := syscall.Kill(svcPID, 0); err != nil {
		t.Fatalf("the holder's service %d is gone too: %v", svcPID, err)
	}

	if h, held, err := Status(path); err != nil || held || h != (Holder{}) {
		t.Errorf("Status after kill -9 = %+v, %v, %v; want not held, no holder", h, held, err)
	}
	start := time.Now()
	l := mustAcquire(t, path, me("after-crash"))
	if d := time.Since(start); d > time.Second {
		t.Errorf("Acquire after the holder died took %s", d)
	}
	if l.Frozen() != nil {
		t.Errorf("Frozen() = %+v after a crash; want nil", l.Frozen())
	}
}

func TestFreeze(t *testing.T) {
	path := lockPath(t)
	l := mustAcquire(t, path, me("manual"))
	if err := l.Freeze(Holder{Host: "test", User: "ops", Message: "incident 7", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}

	h, held, err := Status(path)
	if err != nil || held || !h.Frozen || h.Message != "incident 7" || h.PID != 0 {
		t.Fatalf("Status after freeze+release = %+v, %v, %v; want frozen, not held", h, held, err)
	}

	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("wait=%v", wait), func(t *testing.T) {
			start := time.Now()
			l, err := Acquire(t.Context(), path, me("push"), wait, false)
			if l != nil {
				t.Fatal("Acquire on a frozen lock returned a lock")
			}
			got := lockedBy(t, err)
			if !got.Frozen || got.User != "ops" {
				t.Errorf("holder = %+v; want the freeze", got)
			}
			for _, want := range []string{"frozen", "incident 7", "slipway lock release"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Acquire on a frozen lock took %s", d)
			}
		})
	}

	// Only allowFrozen (recovery, `lock release`) gets in, and sees the freeze.
	l2, err := Acquire(t.Context(), path, me("manual"), false, true)
	if err != nil {
		t.Fatalf("Acquire allowFrozen: %v", err)
	}
	if f := l2.Frozen(); f == nil || f.Message != "incident 7" {
		t.Errorf("Frozen() = %+v; want the freeze", f)
	}
	if err := l2.Unfreeze(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
	if h, held, err := Status(path); err != nil || held || h.Frozen {
		t.Errorf("Status after unfreeze = %+v, %v, %v; want clear", h, held, err)
	}
	mustAcquire(t, path, me("push"))
}

// A freeze is written into the file: it outlives the process that made it.
func TestFreezeOutlivesProcess(t *testing.T) {
	path := lockPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SLIPWAY_LOCK_HELPER=freeze", "SLIPWAY_LOCK_PATH="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	h, held, err := Status(path)
	if err != nil || held || !h.Frozen || h.Message != "incident 42" {
		t.Fatalf("Status = %+v, %v, %v; want frozen by the exited helper", h, held, err)
	}
	_, err = Acquire(t.Context(), path, me("poll"), false, false)
	if got := lockedBy(t, err); got.Message != "incident 42" {
		t.Errorf("holder = %+v", got)
	}
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string // "" with noFile: no file at all
		noFile  bool
		want    Holder
	}{
		{name: "missing file", noFile: true},
		{name: "empty file"},
		{name: "stale holder of a dead deploy", content: `{"pid":99999,"host":"h","trigger":"push","started":"2024-01-01T00:00:00Z"}`},
		{name: "frozen", content: `{"host":"h","user":"ops","frozen":true,"message":"m","started":"2024-01-01T00:00:00Z"}`,
			want: Holder{Host: "h", User: "ops", Frozen: true, Message: "m", Started: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if !tt.noFile {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			h, held, err := Status(path)
			if err != nil || held {
				t.Fatalf("Status = %v, %v; want not held, nil", held, err)
			}
			if !h.Started.Equal(tt.want.Started) {
				t.Errorf("Started = %v; want %v", h.Started, tt.want.Started)
			}
			h.Started, tt.want.Started = time.Time{}, time.Time{}
			if h != tt.want {
				t.Errorf("holder = %+v; want %+v", h, tt.want)
			}
			if _, err := os.Stat(path); tt.noFile && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Status created the lock file: %v", err)
			}
		})
	}
}

func TestHolderString(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name string
		h    Holder
		want []string
	}{
		{"deploy", Holder{PID: 42, Host: "web1", Trigger: "webhook", Started: at}, []string{"webhook deploy", "pid 42", "web1", "2025-03-04T05:06:07Z"}},
		{"frozen", Holder{Host: "web1", User: "ops", Frozen: true, Message: "db upgrade", Started: at}, []string{"frozen by ops@web1", `"db upgrade"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.h.String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("%q does not contain %q", s, w)
				}
			}
		})
	}
}

// A deploy starts services while it holds the lock; they must not inherit
// it, or the next deploy would wait for them forever.
func TestServicesDoNotInheritLock(t *testing.T) {
	path := lockPath(t)
	l := mustAcquire(t, path, me("push"))
	svc := exec.Command("sleep", "30")
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = svc.Process.Kill()
		_ = svc.Wait()
	})
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, held, _ := Status(path); held {
		t.Fatal("Status says held while only the service runs")
	}
	mustAcquire(t, path, me("next"))
}

// A freeze must hold whatever its message: `slipway lock acquire -m` takes
// up to 1000 characters, and JSON escapes each of <, > and & as six bytes.
// (A lock file that did not fit the read buffer used to parse as "not
// frozen" and let deploys through.)
func TestFreezeWithLongMessage(t *testing.T) {
	tests := []struct {
		name string
		msg  string
	}{
		{"1000 escaped characters", strings.Repeat("<", 1000)},
		{"long plain message", strings.Repeat("db migration in progress; ", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := lockPath(t)
			l := mustAcquire(t, path, me("manual"))
			if err := l.Freeze(Holder{Host: "test", User: "ops", Message: tt.msg, Started: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			if h, _, _ := Status(path); !h.Frozen || h.Message != tt.msg {
				t.Errorf("Status does not show the freeze: %+v", h.Frozen)
			}
			l2, err := Acquire(t.Context(), path, me("push"), false, false)
			if err == nil {
				_ = l2.Release()
				t.Fatal("a deploy got through a freeze")
			}
			lockedBy(t, err)
		})
	}
}

// A hold freezes every deploy but those that carry its key, and ends by
// itself when its time runs out.
func TestHold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deploy.lock")
	ctx := context.Background()
	hold := func(key string, ttl time.Duration) {
		t.Helper()
		h := NewHolder("hold", time.Now())
		h.Key = key
		l, err := Acquire(ctx, path, h, false, false)
		if err != nil {
			t.Fatal(err)
		}
		h.Message, h.Expires = "rollout", time.Now().Add(ttl)
		if err := l.Freeze(h); err != nil {
			t.Fatal(err)
		}
		_ = l.Release()
	}
	hold("fleet-1", time.Hour)
	if _, err := Acquire(ctx, path, NewHolder("poll", time.Now()), false, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("a deploy without the key: %v, want locked", err)
	}
	other := NewHolder("hold", time.Now())
	other.Key = "fleet-2"
	if _, err := Acquire(ctx, path, other, false, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("another rollout's hold: %v, want locked", err)
	}
	mine := NewHolder("manual", time.Now())
	mine.Key = "fleet-1"
	l, err := Acquire(ctx, path, mine, false, false)
	if err != nil {
		t.Fatalf("a deploy with the key: %v", err)
	}
	_ = l.Release()
	if h, _, _ := Status(path); !h.Frozen || h.Key != "fleet-1" {
		t.Fatalf("the hold after a deploy through it: %+v", h)
	}
	hold("fleet-1", 50*time.Millisecond) // renewed, shorter
	time.Sleep(60 * time.Millisecond)    // the hold's own deadline, not a race
	if h, _, _ := Status(path); h.Frozen {
		t.Fatalf("an expired hold still freezes: %+v", h)
	}
	l, err = Acquire(ctx, path, NewHolder("poll", time.Now()), false, false)
	if err != nil {
		t.Fatalf("a deploy after the hold expired: %v", err)
	}
	_ = l.Release()
}
