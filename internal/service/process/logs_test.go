package process

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTail(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var many strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&many, "line %d of a log that is much longer than one read chunk\n", i)
	}
	manyPath := write("many.log", many.String())
	small := write("small.log", "one\ntwo\nthree\n")
	noNewline := write("partial.log", "one\ntwo\nthr")
	huge := write("huge.log", strings.Repeat("x", 3<<20)+"\nlast\n")
	empty := write("empty.log", "")

	tests := []struct {
		name string
		path string
		from int64
		n    int
		want string
	}{
		{"last lines of a big file", manyPath, 0, 3,
			"line 4998 of a log that is much longer than one read chunk\nline 4999 of a log that is much longer than one read chunk\nline 5000 of a log that is much longer than one read chunk\n"},
		{"more lines than the file has", small, 0, 10, "one\ntwo\nthree\n"},
		{"exactly all lines", small, 0, 3, "one\ntwo\nthree\n"},
		{"fewer", small, 0, 2, "two\nthree\n"},
		{"from an offset", small, 4, 10, "two\nthree\n"},
		{"unterminated last line", noNewline, 0, 2, "two\nthr\n"},
		{"a line longer than the read limit", huge, 0, 5, "last\n"},
		{"empty", empty, 0, 5, ""},
		{"missing", filepath.Join(dir, "nope.log"), 0, 5, ""},
		{"zero lines", small, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tail(tt.path, tt.from, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("tail = %q, want %q", got, tt.want)
			}
		})
	}
}
