package release

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// venvLike makes a tree shaped like a Python venv: about 180 directories,
// 9 files in each, a symlink and a read-only directory.
func venvLike(tb testing.TB) string {
	tb.Helper()
	root := filepath.Join(tb.TempDir(), "venv")
	for p := range 20 {
		for m := range 9 {
			dir := filepath.Join(root, "lib", fmt.Sprintf("pkg%02d", p), fmt.Sprintf("mod%d", m))
			for f := range 9 {
				testkit.WriteFile(tb, filepath.Join(dir, fmt.Sprintf("f%d.py", f)), fmt.Sprintf("# %d %d %d\n", p, m, f), 0o644)
			}
		}
	}
	testkit.WriteFile(tb, filepath.Join(root, "bin", "python3"), "#!/bin/sh\n", 0o755)
	if err := os.Symlink("python3", filepath.Join(root, "bin", "python")); err != nil {
		tb.Fatal(err)
	}
	testkit.WriteFile(tb, filepath.Join(root, "share", "ro", "data.txt"), "read-only\n", 0o444)
	if err := os.Chmod(filepath.Join(root, "share", "ro"), 0o555); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "share", "ro"), 0o755) })
	return root
}

func TestCopyTree(t *testing.T) {
	for _, link := range []bool{false, true} {
		t.Run(fmt.Sprintf("link=%v", link), func(t *testing.T) {
			src := venvLike(t)
			old := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
			if err := os.Chtimes(filepath.Join(src, "bin", "python3"), old, old); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "copy")
			if err := copyTree(src, dst, link); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(filepath.Join(dst, "share", "ro"), 0o755) })
			if a, b := digestOf(t, src), digestOf(t, dst); a != b {
				t.Fatal("the copy differs from the source")
			}
			if n := countFiles(t, dst); n != 20*9*9+3 {
				t.Fatalf("%d files copied, want %d", n, 20*9*9+3)
			}
			for path, want := range map[string]os.FileMode{"share/ro": 0o555, "share/ro/data.txt": 0o444, "bin/python3": 0o755, "lib": 0o755} {
				info, err := os.Stat(filepath.Join(dst, path))
				if err != nil || info.Mode().Perm() != want {
					t.Errorf("%s: %v, %v; want mode %v", path, info, err, want)
				}
			}
			if target, err := os.Readlink(filepath.Join(dst, "bin", "python")); err != nil || target != "python3" {
				t.Errorf("bin/python -> %q, %v; want the symlink kept", target, err)
			}
			info, err := os.Stat(filepath.Join(dst, "bin", "python3"))
			if err != nil || !info.ModTime().Equal(old) {
				t.Errorf("bin/python3 mtime %v, %v; want %v", info.ModTime(), err, old)
			}
			a, _ := os.Stat(filepath.Join(src, "lib", "pkg03", "mod4", "f5.py"))
			b, _ := os.Stat(filepath.Join(dst, "lib", "pkg03", "mod4", "f5.py"))
			if os.SameFile(a, b) != link {
				t.Errorf("hard-linked = %v, want %v", os.SameFile(a, b), link)
			}
		})
	}
}

func TestCopyTreeFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "Gemfile.lock")
	testkit.WriteFile(t, src, "gems\n", 0o600)
	dst := filepath.Join(t.TempDir(), "Gemfile.lock")
	if err := copyTree(src, dst, false); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dst)
	if err != nil || info.Mode().Perm() != 0o600 || readFile(t, dst) != "gems\n" {
		t.Fatalf("%v, %v; want the file with mode 0600", info, err)
	}
}

func TestCopyTreeRefusesSpecialFiles(t *testing.T) {
	src := venvLike(t)
	fifo := filepath.Join(src, "lib", "pkg07", "mod2", "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	err := copyTree(src, filepath.Join(t.TempDir(), "copy"), true)
	if err == nil || !strings.Contains(err.Error(), fifo) {
		t.Fatalf("copyTree = %v; want an error naming %s", err, fifo)
	}
}

func TestCopyTreeRefusesAnExistingTarget(t *testing.T) {
	src := venvLike(t)
	dst := t.TempDir()
	if err := copyTree(src, dst, true); !os.IsExist(err) {
		t.Fatalf("copyTree = %v; want an already-exists error", err)
	}
}

func digestOf(t *testing.T, path string) string {
	t.Helper()
	d, err := digest(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func countFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkCopyTree: build.reuse's copy of a venv-sized tree (about 1,650
// entries), hard-linked as the Python example does and copied.
func BenchmarkCopyTree(b *testing.B) {
	src := venvLike(b)
	for _, link := range []bool{true, false} {
		b.Run(fmt.Sprintf("link=%v", link), func(b *testing.B) {
			dir := b.TempDir()
			i := 0
			for b.Loop() {
				i++
				if err := copyTree(src, filepath.Join(dir, fmt.Sprint(i)), link); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					_ = os.Chmod(p, 0o755)
				}
				return nil
			})
		})
	}
}
