package release

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// copyWorkers bounds how many directories copyTree works on at once. The
// work is system calls (mkdir, link, open, copy), which overlap well even
// on two cores.
const copyWorkers = 8

// copyTree copies the tree (or the file) at src to dst, which must not
// exist, keeping modes, modification times and symlinks as they are. With
// link, regular files are hard-linked instead of copied; directories are
// always new. It runs in-process (on a small tree, starting cp costs more
// than the copy) and copies several directories at once.
func copyTree(src, dst string, link bool) error {
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	c := &treeCopy{link: link, sem: make(chan struct{}, copyWorkers)}
	if err := c.entry(src, dst, fs.FileInfoToDirEntry(info)); err != nil {
		return err
	}
	c.wg.Wait()
	if err := errors.Join(c.errs...); err != nil {
		return err
	}
	// Modes are set once the contents are in (a read-only directory would
	// refuse them), deepest first.
	for i := len(c.dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(c.dirs[i].path, c.dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

type dirMode struct {
	path string
	mode fs.FileMode
}

type treeCopy struct {
	link bool
	sem  chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	dirs []dirMode // every directory made, parents before children
	errs []error
}

func (c *treeCopy) fail(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

func (c *treeCopy) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.errs) > 0
}

// dir copies the entries of src into dst, which exists; subdirectories are
// made here and copied by goroutines of their own.
func (c *treeCopy) dir(src, dst string) {
	defer c.wg.Done()
	c.sem <- struct{}{}
	defer func() { <-c.sem }()
	if c.failed() {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.fail(err)
		return
	}
	entries, err := f.ReadDir(-1)
	_ = f.Close()
	if err != nil {
		c.fail(err)
		return
	}
	for _, d := range entries {
		if err := c.entry(filepath.Join(src, d.Name()), filepath.Join(dst, d.Name()), d); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *treeCopy) entry(path, target string, d fs.DirEntry) error {
	switch t := d.Type(); {
	case t.IsDir():
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.Mkdir(target, 0o700); err != nil {
			return err
		}
		c.mu.Lock()
		c.dirs = append(c.dirs, dirMode{target, info.Mode().Perm()})
		c.mu.Unlock()
		c.wg.Add(1)
		go c.dir(path, target)
		return nil
	case t&fs.ModeSymlink != 0:
		dest, err := os.Readlink(path)
		if err != nil {
			return err
		}
		return os.Symlink(dest, target)
	case t.IsRegular():
		if c.link {
			return os.Link(path, target)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(path, target, info)
	default:
		return fmt.Errorf("%s: cannot copy a %s", path, t)
	}
}

func copyFile(src, dst string, info fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Chtimes(dst, info.ModTime(), info.ModTime())
}
