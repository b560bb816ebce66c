package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOutput(t *testing.T) {
	tests := []struct {
		name string
		cmd  Cmd
		want string
	}{
		{name: "stdout only", cmd: Cmd{Argv: []string{"sh", "-c", "echo out; echo err >&2"}}, want: "out\n"},
		{name: "args are not split again", cmd: Cmd{Argv: []string{"printf", "%s|", "a b", "$HOME"}}, want: "a b|$HOME|"},
		{name: "dir", cmd: Cmd{Argv: []string{"pwd"}, Dir: "/"}, want: "/\n"},
		{name: "stdin", cmd: Cmd{Argv: []string{"cat"}, Stdin: strings.NewReader("piped\n")}, want: "piped\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Output(t.Context(), tt.cmd)
			if err != nil || got != tt.want {
				t.Errorf("Output = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestRunSendsBothStreams(t *testing.T) {
	var out bytes.Buffer
	err := Run(t.Context(), Cmd{Argv: []string{"sh", "-c", "echo one; echo two >&2; echo three"}, Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "one\ntwo\nthree\n" {
		t.Errorf("Output got %q; want stdout and stderr in order", got)
	}
	if err := Run(t.Context(), Cmd{Argv: []string{"true"}}); err != nil {
		t.Errorf("Run(true) with no Output = %v", err)
	}
}

func TestFailure(t *testing.T) {
	tests := []struct {
		name     string
		run      func(Cmd) error
		cmd      Cmd
		exitCode int
		message  string // the whole error message
		tail     string // what Tail must contain
		noTail   string // what Tail must not contain
	}{
		{
			name:     "Output keeps stderr",
			run:      func(c Cmd) error { _, err := Output(t.Context(), c); return err },
			cmd:      Cmd{Argv: []string{"sh", "-c", "echo result; echo 'npm ERR! missing script' >&2; exit 3"}},
			exitCode: 3,
			message:  "`sh -c echo result; echo 'npm ERR! missing script' >&2; exit 3` exited with code 3",
			tail:     "npm ERR! missing script",
			noTail:   "result",
		},
		{
			name:     "Run keeps both",
			run:      func(c Cmd) error { return Run(t.Context(), c) },
			cmd:      Cmd{Argv: []string{"sh", "-c", "echo building; echo boom >&2; exit 42"}},
			exitCode: 42,
			message:  "`sh -c echo building; echo boom >&2; exit 42` exited with code 42",
			tail:     "building\nboom\n",
		},
		{
			name:     "Display hides the argv",
			run:      func(c Cmd) error { return Run(t.Context(), c) },
			cmd:      Cmd{Argv: []string{"sh", "-c", "exit 1", "token=s3cret"}, Display: "deploy hook"},
			exitCode: 1,
			message:  "`deploy hook` exited with code 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(tt.cmd)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("err = %T %v; want *run.Error", err, err)
			}
			if re.ExitCode != tt.exitCode || re.TimedOut {
				t.Errorf("ExitCode = %d, TimedOut = %v; want %d, false", re.ExitCode, re.TimedOut, tt.exitCode)
			}
			if err.Error() != tt.message {
				t.Errorf("message = %q; want %q", err.Error(), tt.message)
			}
			if !strings.Contains(re.Tail, tt.tail) {
				t.Errorf("Tail = %q; want it to contain %q", re.Tail, tt.tail)
			}
			if tt.noTail != "" && strings.Contains(re.Tail, tt.noTail) {
				t.Errorf("Tail = %q; stdout %q should be the result, not the tail", re.Tail, tt.noTail)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("message %q shows the hidden argv", err)
			}
		})
	}
}

func TestCannotStart(t *testing.T) {
	err := Run(t.Context(), Cmd{Argv: []string{"slipway-no-such-program"}})
	var re *Error
	if !errors.As(err, &re) || re.ExitCode != -1 || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("err = %v; want *run.Error wrapping exec.ErrNotFound, exit -1", err)
	}
	if !strings.Contains(err.Error(), "slipway-no-such-program") {
		t.Errorf("message %q does not name the program", err)
	}
	if err := Run(t.Context(), Cmd{}); err == nil {
		t.Error("empty argv ran")
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d outlived the command", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bgPID reads the pid the shell printed for its background child.
func bgPID(t *testing.T, out string) int {
	t.Helper()
	line, _, _ := strings.Cut(out, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("no background pid in output %q", out)
	}
	return pid
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	tests := []struct {
		name string
		run  func(Cmd) (string, error)
	}{
		{"Run", func(c Cmd) (string, error) {
			var out bytes.Buffer // Run returns only after the output is copied
			c.Output = &out
			err := Run(t.Context(), c)
			return out.String(), err
		}},
		{"Output", func(c Cmd) (string, error) { return Output(t.Context(), c) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, err := tt.run(Cmd{
				Argv:    []string{"sh", "-c", "sleep 60 & echo $!; sleep 60"},
				Timeout: 300 * time.Millisecond,
			})
			took := time.Since(start)
			var re *Error
			if !errors.As(err, &re) || !re.TimedOut || re.ExitCode != -1 {
				t.Fatalf("err = %#v; want a timed-out *run.Error", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err does not wrap context.DeadlineExceeded")
			}
			if !strings.HasSuffix(err.Error(), " timed out") {
				t.Errorf("message = %q; want it to say timed out", err)
			}
			if took > 3*time.Second {
				t.Errorf("returned after %s; want soon after the 300ms timeout", took)
			}
			// The shell's background child is in its group and is gone too.
			waitGone(t, bgPID(t, out))
		})
	}
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	out, err := Output(ctx, Cmd{Argv: []string{"sh", "-c", "sleep 60 & echo $!; sleep 60"}})
	var re *Error
	if !errors.As(err, &re) || re.TimedOut || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want a canceled, not timed-out, *run.Error", err)
	}
	if !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("message = %q", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("returned after %s", d)
	}
	waitGone(t, bgPID(t, out))
}

// A parent context whose deadline passes counts as a timeout too.
func TestParentDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err := Run(ctx, Cmd{Argv: []string{"sleep", "60"}})
	var re *Error
	if !errors.As(err, &re) || !re.TimedOut {
		t.Fatalf("err = %v; want TimedOut", err)
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("SLIPWAY_TEST_SECRET", "hunter2")
	home, _ := os.UserHomeDir()
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{name: "exactly what is given", env: []string{"A=1", "B=two words"}, want: []string{"A=1", "B=two words"}},
		{name: "empty means empty", env: []string{}, want: nil},
		{name: "nil means BaseEnv", env: nil, want: []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "HOME=" + home}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Output(t.Context(), Cmd{Argv: []string{"/usr/bin/env"}, Env: tt.env})
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if out == "" {
				got = nil
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("env = %q; want %q", got, tt.want)
			}
			if strings.Contains(out, "hunter2") {
				t.Error("the caller's environment leaked into the command")
			}
		})
	}
}

func TestBaseEnv(t *testing.T) {
	t.Setenv("PATH", "")
	env := BaseEnv()
	if env[0] != "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("PATH with none set = %q", env[0])
	}
	t.Setenv("PATH", "/opt/node/bin:/usr/bin")
	if env := BaseEnv(); env[0] != "PATH=/opt/node/bin:/usr/bin" || env[1] != "LC_ALL=C" {
		t.Errorf("BaseEnv = %q", env)
	}
}

func TestNeedsShellArgv(t *testing.T) {
	tests := []struct {
		command string
		shell   bool
		argv    []string
	}{
		{"npm ci", false, []string{"npm", "ci"}},
		{"  bundle   exec  rake\tassets:precompile ", false, []string{"bundle", "exec", "rake", "assets:precompile"}},
		{".venv/bin/alembic upgrade head", false, []string{".venv/bin/alembic", "upgrade", "head"}},
		{"go build -o bin/app ./cmd/app", false, []string{"go", "build", "-o", "bin/app", "./cmd/app"}},
		{"npm ci && npm run build", true, nil},
		{"make | tee log", true, nil},
		{"echo $HOME", true, nil},
		{"echo `date`", true, nil},
		{"cat < in > out", true, nil},
		{"ls *.go", true, nil},
		{"RAILS_ENV=production rake db:migrate", true, nil},
		{"echo 'quoted arg'", true, nil},
		{`echo "quoted arg"`, true, nil},
		{"cd web; make", true, nil},
		{"(cd web)", true, nil},
		{"ls ~", true, nil},
		{"echo a # comment", true, nil},
		{"printf 100%", true, nil},
		{"echo a\necho b", true, nil},
		{`echo a\ b`, true, nil},
		{"ls [ab]", true, nil},
		{"ls a?", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			if got := NeedsShell(tt.command); got != tt.shell {
				t.Errorf("NeedsShell = %v; want %v", got, tt.shell)
			}
			want := tt.argv
			if tt.shell {
				want = []string{"/bin/sh", "-c", tt.command}
			}
			if got := Argv(tt.command); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("Argv = %q; want %q", got, want)
			}
		})
	}
}

// A command as written in slipway.yml runs the way a shell would run it.
func TestArgvRuns(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		command string
		want    string
	}{
		{"echo plain   words", "plain words\n"},
		{"echo a && echo b", "a\nb\n"},
		{"X=1; echo $X", "1\n"},
		{"echo 'a  b' | tr a z", "z  b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			got, err := Output(t.Context(), Cmd{Argv: Argv(tt.command), Dir: dir})
			if err != nil || got != tt.want {
				t.Errorf("Output = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	tests := []struct {
		name string
		base []string
		over map[string]string
		keys []string
		want []string
	}{
		{name: "nothing over", base: []string{"A=1", "B=2"}, want: []string{"A=1", "B=2"}},
		{name: "override and add, in keys order",
			base: []string{"PATH=/bin", "PORT=80", "LANG=C"},
			over: map[string]string{"PORT": "8000", "DATABASE_URL": "postgres://x", "ZED": "z"},
			keys: []string{"ZED", "PORT", "DATABASE_URL"},
			want: []string{"PATH=/bin", "LANG=C", "ZED=z", "PORT=8000", "DATABASE_URL=postgres://x"}},
		{name: "values with = and empty values", base: []string{"A=x=y"},
			over: map[string]string{"B": "a=b", "C": ""}, keys: []string{"B", "C"},
			want: []string{"A=x=y", "B=a=b", "C="}},
		{name: "every duplicate in base is replaced", base: []string{"A=1", "X=old", "A=2"},
			over: map[string]string{"A": "3"}, keys: []string{"A"},
			want: []string{"X=old", "A=3"}},
		{name: "a key prefix is not the key", base: []string{"PATHX=1", "PATH=/bin"},
			over: map[string]string{"PATH": "/usr/bin"}, keys: []string{"PATH"},
			want: []string{"PATHX=1", "PATH=/usr/bin"}},
		{name: "nil base", over: map[string]string{"A": "1"}, keys: []string{"A"}, want: []string{"A=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := append([]string(nil), tt.base...)
			got := MergeEnv(tt.base, tt.over, tt.keys)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("MergeEnv = %q; want %q", got, tt.want)
			}
			if strings.Join(base, "\n") != strings.Join(tt.base, "\n") {
				t.Errorf("MergeEnv changed its base: %q", tt.base)
			}
		})
	}
}

func TestLastLines(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n\n\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"only", 1, "only"},
		{"", 3, ""},
		{"a\n\nb\n", 3, "a\n\nb"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d", tt.s, tt.n), func(t *testing.T) {
			if got := LastLines(tt.s, tt.n); got != tt.want {
				t.Errorf("LastLines = %q; want %q", got, tt.want)
			}
		})
	}
}

var numbered = regexp.MustCompile(`^line \d+$`)

// A build that prints megabytes keeps only the end of it in the error.
func TestBigOutputKeepsTail(t *testing.T) {
	const n = 100000
	err := Run(t.Context(), Cmd{Argv: []string{"sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do i=$((i+1)); echo \"line $i\"; done >&2; exit 1", n)}})
	var re *Error
	if !errors.As(err, &re) || re.ExitCode != 1 {
		t.Fatalf("err = %v", err)
	}
	if len(re.Tail) > tailSize {
		t.Errorf("Tail holds %d bytes; want at most %d", len(re.Tail), tailSize)
	}
	if len(re.Tail) < tailSize/2 {
		t.Errorf("Tail holds only %d bytes", len(re.Tail))
	}
	lines := strings.Split(strings.TrimSuffix(re.Tail, "\n"), "\n")
	if last := lines[len(lines)-1]; last != fmt.Sprintf("line %d", n) {
		t.Errorf("last line = %q; want line %d", last, n)
	}
	// Lines after the first are whole and in order (the first is checked
	// in TestTailStartsAtLine).
	for i := 1; i < len(lines); i++ {
		want := fmt.Sprintf("line %d", n-len(lines)+1+i)
		if lines[i] != want {
			t.Fatalf("tail line %d = %q; want %q", i, lines[i], want)
		}
	}
}

func TestTailWriter(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"under the limit", 16, []string{"a\n", "b\n"}, "a\nb\n"},
		{"exactly the limit", 4, []string{"ab\nc"}, "ab\nc"},
		{"cut at a line", 8, []string{"first line\n", "second\n", "third\n"}, "third\n"},
		{"one long line keeps its end", 4, []string{"abcdefghij"}, "ghij"},
		{"many small writes", 6, []string{"1\n", "2\n", "3\n", "4\n", "5\n", "6\n", "7\n"}, "5\n6\n7\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &tailWriter{max: tt.max}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := w.String(); got != tt.want {
				t.Errorf("String = %q; want %q", got, tt.want)
			}
		})
	}
	t.Run("memory stays bounded", func(t *testing.T) {
		w := &tailWriter{max: 1024}
		chunk := bytes.Repeat([]byte("x"), 700)
		for range 10000 {
			_, _ = w.Write(chunk)
			if len(w.buf) > 2*1024+len(chunk) {
				t.Fatalf("buffer grew to %d bytes", len(w.buf))
			}
		}
	})
}

// The tail an operator reads starts at the beginning of a line: a cut
// "ine 1234" reads as garbage.
func TestTailStartsAtLine(t *testing.T) {
	for _, size := range []int{2*tailSize + 1, 3 * tailSize, 32 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			var b strings.Builder
			for i := 1; b.Len() < size; i++ {
				fmt.Fprintf(&b, "line %d\n", i)
			}
			w := &tailWriter{max: tailSize}
			_, _ = w.Write([]byte(b.String())) // one pipe read of a failing build's output
			first, _, _ := strings.Cut(w.String(), "\n")
			if !numbered.MatchString(first) {
				t.Errorf("tail starts with %q; want a whole line", first)
			}
		})
	}
}
