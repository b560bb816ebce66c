package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeEnv(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.env")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadEnvFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
	}{
		{"empty", "", map[string]string{}},
		{"blank and comment lines", "\n  \n# comment\n  # indented comment\nA=1\n", map[string]string{"A": "1"}},
		{"export prefix", "export A=1\nexport\tB=2\nexported=3\n", map[string]string{"A": "1", "B": "2", "exported": "3"}},
		{"variable named export", "export=1\n", map[string]string{"export": "1"}},
		{"unquoted trimmed", "A =  spaced out  \n", map[string]string{"A": "spaced out"}},
		{"unquoted inline comment", "A=value # comment\nB=a#b\nC=#not-a-comment\nD= # only a comment\n",
			map[string]string{"A": "value", "B": "a#b", "C": "#not-a-comment", "D": ""}},
		{"empty value", "A=\nB=''\nC=\"\"\n", map[string]string{"A": "", "B": "", "C": ""}},
		{"single quotes are literal", `A='a \n "b" # c $X'`, map[string]string{"A": `a \n "b" # c $X`}},
		{"double quote escapes", `A="line1\nline2\t\"q\" \\ \x"`, map[string]string{"A": "line1\nline2\t\"q\" \\ \\x"}},
		{"comment after quotes", `A="v" # c` + "\nB='w'   # d", map[string]string{"A": "v", "B": "w"}},
		{"equals in value", "URL=postgres://u:p@h/db?x=1\n", map[string]string{"URL": "postgres://u:p@h/db?x=1"}},
		{"later wins", "A=1\nA=2\n", map[string]string{"A": "2"}},
		{"CRLF and BOM", "\uFEFFA=1\r\nB=\"2\"\r\n", map[string]string{"A": "1", "B": "2"}},
		{"no expansion", "A=1\nB=${A}\n", map[string]string{"A": "1", "B": "${A}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadEnvFile(writeEnv(t, tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadEnvFileErrors(t *testing.T) {
	tests := []struct {
		name, in, want string // want: the error after "PATH:"
	}{
		{"no equals", "A=1\njust words\n", `2: expected KEY=VALUE`},
		{"bad key", "1A=x\n", `1: "1A" is not a valid variable name (letters, digits and _, not starting with a digit)`},
		{"dash in key", "\n\nMY-KEY=x\n", `3: "MY-KEY" is not a valid variable name (letters, digits and _, not starting with a digit)`},
		{"empty key", "=x\n", `1: "" is not a valid variable name (letters, digits and _, not starting with a digit)`},
		{"unterminated single quote", "A='abc\n", `1: A: missing closing single quote`},
		{"unterminated double quote", `A="abc\"`, `1: A: missing closing double quote`},
		{"text after quote", `A="abc" def`, `1: A: unexpected "def" after the closing quote`},
		{"NUL byte", "A=a\x00b\n", `1: A: value contains a NUL byte`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeEnv(t, tt.in)
			_, err := ReadEnvFile(p)
			if err == nil {
				t.Fatal("no error")
			}
			if got, want := err.Error(), p+":"+tt.want; got != want {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestReadEnvFileNotRegular(t *testing.T) {
	if _, err := ReadEnvFile(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: err = %v", err)
	}
	if _, err := ReadEnvFile(filepath.Join(t.TempDir(), "nope.env")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: err = %v", err)
	}
}

// FuzzReadEnvFile checks that any file content parses or fails cleanly, that
// keys are valid, and that every value survives being written back
// double-quoted. It fuzzes the parser ReadEnvFile uses, without the disk.
func FuzzReadEnvFile(f *testing.F) {
	for _, s := range []string{
		"A=1\n", "export A='x'\n", `A="a\nb\"c\\"` + "\n", "# c\n\nA = b # c\r\n", "A='", `A="\`, "\uFEFFA=",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := parseEnv("fuzz.env", string(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.env:") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("badly placed: %q", err)
			}
			return
		}
		var b strings.Builder
		for k, v := range vars {
			if !envKeyPattern.MatchString(k) {
				t.Fatalf("invalid key %q", k)
			}
			r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
			b.WriteString(k + `="` + r.Replace(v) + "\"\n")
		}
		again, err := parseEnv("again.env", b.String())
		if err != nil {
			t.Fatalf("re-reading %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(again, vars) {
			t.Fatalf("round trip: %q became %q", vars, again)
		}
	})
}
