package fsutil

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/slipway-dev/slipway/internal/testkit"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // nil: no file before
		oldMode  os.FileMode
		data     []byte
		perm     os.FileMode
	}{
		{name: "new file", data: []byte("abc\n"), perm: 0o644},
		{name: "replace keeps nothing of the old", existing: []byte("a much longer old content\n"), oldMode: 0o644, data: []byte("new\n"), perm: 0o644},
		{name: "tightens the mode", existing: []byte("secret=1\n"), oldMode: 0o644, data: []byte("secret=2\n"), perm: 0o600},
		{name: "loosens the mode", existing: []byte("x"), oldMode: 0o600, data: []byte("y"), perm: 0o640},
		{name: "empty content", existing: []byte("x"), oldMode: 0o644, data: []byte{}, perm: 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "SAFE_COMMIT")
			if tt.existing != nil {
				if err := os.WriteFile(path, tt.existing, tt.oldMode); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tt.data, tt.perm); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, tt.data) {
				t.Errorf("content = %q, %v; want %q", got, err, tt.data)
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != tt.perm {
				t.Errorf("mode = %04o; want %04o", info.Mode().Perm(), tt.perm)
			}
			if n := testkit.Names(t, dir); len(n) != 1 || n[0] != "SAFE_COMMIT" {
				t.Errorf("directory holds %q; want only SAFE_COMMIT (no temp files)", n)
			}
		})
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nope", "f")
	if err := WriteFile(path, []byte("x"), 0o644); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
	if n := testkit.Names(t, dir); len(n) != 0 {
		t.Errorf("left %q behind", n)
	}
}

// A reader never sees a half-written or missing file while it is replaced.
func TestWriteFileReadersSeeWholeFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	a := bytes.Repeat([]byte("a"), 64<<10)
	b := bytes.Repeat([]byte("b"), 64<<10)
	if err := WriteFile(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			got, err := os.ReadFile(path)
			reads.Add(1)
			if err != nil || (!bytes.Equal(got, a) && !bytes.Equal(got, b)) {
				bad.Add(1)
			}
		}
	}()
	for i := range 200 {
		data := a
		if i%2 == 0 {
			data = b
		}
		if err := WriteFile(path, data, 0o644); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of %d reads saw a missing or partial file", bad.Load(), reads.Load())
	}
	if n := testkit.Names(t, dir); len(n) != 1 {
		t.Errorf("directory holds %q; want only the file", n)
	}
}

func TestSymlink(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, link string)
	}{
		{name: "new link", before: func(*testing.T, string) {}},
		{name: "replaces a link", before: func(t *testing.T, link string) {
			if err := os.Symlink("releases/old", link); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaces a dangling link", before: func(t *testing.T, link string) {
			if err := os.Symlink("/nonexistent/target", link); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaces a stale temp link", before: func(t *testing.T, link string) {
			// What a crash between symlink and rename leaves.
			stale := filepath.Join(filepath.Dir(link), "."+filepath.Base(link)+".tmp-"+strconv.Itoa(os.Getpid()))
			if err := os.Symlink("releases/crashed", stale); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			link := filepath.Join(dir, "current")
			tt.before(t, link)
			if err := Symlink("releases/new", link); err != nil {
				t.Fatalf("Symlink: %v", err)
			}
			if got, err := os.Readlink(link); err != nil || got != "releases/new" {
				t.Errorf("current -> %q, %v; want releases/new", got, err)
			}
			if n := testkit.Names(t, dir); len(n) != 1 || n[0] != "current" {
				t.Errorf("directory holds %q; want only current", n)
			}
		})
	}
}

func TestSymlinkOverDirectoryFails(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "current")
	if err := os.Mkdir(link, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Symlink("releases/x", link); err == nil {
		t.Fatal("Symlink over a directory succeeded")
	}
	if info, err := os.Lstat(link); err != nil || !info.IsDir() {
		t.Errorf("the directory was disturbed: %v, %v", info, err)
	}
	if n := testkit.Names(t, dir); len(n) != 1 {
		t.Errorf("directory holds %q; want no temp link left", n)
	}
}

// `current` is switched with rename(2): a reader never finds it missing,
// however many switches happen while it looks.
func TestSymlinkNeverMissing(t *testing.T) {
	dir := t.TempDir()
	for _, r := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, "releases", r), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "releases", r, "REVISION"), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "current")
	if err := Symlink("releases/a", link); err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var reads, missing atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			reads.Add(1)
			target, err := os.Readlink(link)
			if err == nil && target != "releases/a" && target != "releases/b" {
				err = errors.New("unexpected target " + target)
			}
			if err == nil {
				// Through the link, as a service starting from current would.
				_, err = os.ReadFile(filepath.Join(link, "REVISION"))
			}
			if err != nil {
				missing.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		}
	}()
	for i := range 1000 {
		target := "releases/a"
		if i%2 == 0 {
			target = "releases/b"
		}
		if err := Symlink(target, link); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("switch %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if missing.Load() != 0 {
		t.Errorf("%d of %d reads failed; first: %v", missing.Load(), reads.Load(), *firstErr.Load())
	}
	if got, _ := os.Readlink(link); got != "releases/a" {
		t.Errorf("current -> %q after the last switch; want releases/a", got)
	}
	if n := testkit.Names(t, dir); len(n) != 2 {
		t.Errorf("directory holds %q; want current and releases only", n)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Errorf("SyncDir: %v", err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("SyncDir of a missing directory succeeded")
	}
}
