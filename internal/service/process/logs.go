package process

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

const (
	tailChunk = 8 << 10
	// tailMax bounds how much of a log a tail reads, whatever its lines.
	tailMax = 1 << 20
)

// tail returns the last n lines of the file at path that lie after offset
// from, reading backwards from its end so a huge log costs no more than its
// tail. A missing file has no lines.
func tail(path string, from int64, n int) (string, error) {
	if n <= 0 {
		return "", nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read log: %w", err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read log: %w", err)
	}
	end := fi.Size()
	start := max(from, end-tailMax, 0)
	var buf []byte
	pos := end
	for pos > start {
		size := min(int64(tailChunk), pos-start)
		pos -= size
		chunk := make([]byte, size)
		if _, err := f.ReadAt(chunk, pos); err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read log %s: %w", path, err)
		}
		buf = append(chunk, buf...)
		// n lines need n newlines before them, plus the one ending the
		// last line.
		if bytes.Count(buf, []byte{'\n'}) > n {
			break
		}
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte{'\n'})
	if pos > from {
		// The read stopped inside the file: the first line may be cut.
		lines = lines[1:]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 || len(lines) == 1 && len(lines[0]) == 0 {
		return "", nil
	}
	return string(bytes.Join(lines, []byte{'\n'})) + "\n", nil
}

// TailFile returns the last n lines of the log at path and its size then,
// from which a follower goes on.
func TailFile(path string, n int) (string, int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	text, err := tail(path, 0, n)
	return text, fi.Size(), err
}
