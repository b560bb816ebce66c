package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// fixture is one provider over a directory of data the suite changes.
type fixture struct {
	p    Provider
	data string // the directory the provider snapshots
}

// runSuite is the test every Provider passes.
func runSuite(t *testing.T, newFixture func(t *testing.T) fixture) {
	ctx := context.Background()
	t.Run("restore brings the data back", func(t *testing.T) {
		f := newFixture(t)
		writeTree(t, f.data, map[string]string{"a.txt": "one", "sub/b.txt": "two"})
		before := readTree(t, f.data)
		taken, err := f.p.Create(ctx, Request{Label: "pre-deploy", App: "board", Commit: "c0ffee"})
		if err != nil {
			t.Fatal(err)
		}
		if taken.ID == "" {
			t.Fatal("no id")
		}
		writeTree(t, f.data, map[string]string{"a.txt": "changed", "new.txt": "new"})
		if err := os.Remove(filepath.Join(f.data, "sub", "b.txt")); err != nil {
			t.Fatal(err)
		}
		if err := f.p.Restore(ctx, taken.ID); err != nil {
			t.Fatal(err)
		}
		if after := readTree(t, f.data); after != before {
			t.Fatalf("after restore:\n%s\nwant:\n%s", after, before)
		}
	})
	t.Run("ids differ", func(t *testing.T) {
		f := newFixture(t)
		writeTree(t, f.data, map[string]string{"a": "1"})
		a, err := f.p.Create(ctx, Request{Label: "x"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.p.Create(ctx, Request{Label: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if a.ID == b.ID {
			t.Fatalf("same id %s twice", a.ID)
		}
	})
	t.Run("unknown id changes nothing", func(t *testing.T) {
		f := newFixture(t)
		writeTree(t, f.data, map[string]string{"a": "1"})
		before := readTree(t, f.data)
		if err := f.p.Restore(ctx, "no-such-snapshot"); err == nil {
			t.Fatal("restore of an unknown id succeeded")
		}
		if readTree(t, f.data) != before {
			t.Fatal("a failed restore changed the data")
		}
	})
	t.Run("delete", func(t *testing.T) {
		f := newFixture(t)
		writeTree(t, f.data, map[string]string{"a": "1"})
		taken, err := f.p.Create(ctx, Request{Label: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.p.Delete(ctx, taken.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.p.Restore(ctx, taken.ID); err == nil {
			t.Fatal("restore of a deleted snapshot succeeded")
		}
	})
}

func TestDataProvider(t *testing.T) {
	runSuite(t, func(t *testing.T) fixture {
		root := t.TempDir()
		shared := filepath.Join(root, "shared")
		return fixture{p: &Data{Shared: shared, Paths: []string{"data"}, Dir: filepath.Join(root, "snapshots")}, data: filepath.Join(shared, "data")}
	})
}

// TestCommandProvider runs the suite against real commands: shell scripts
// that keep "VM snapshots" as copies of a directory, and print the id in
// the middle of other text, as cloud CLIs do.
func TestCommandProvider(t *testing.T) {
	runSuite(t, func(t *testing.T) fixture {
		dir := t.TempDir()
		data, store := filepath.Join(dir, "vm"), filepath.Join(dir, "store")
		for _, d := range []string{data, store} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		script := func(name, body string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte("#!/bin/sh\nset -eu\n"+body), 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}
		create := script("create", `id="commit-$(date +%s%N | sha256sum | cut -c1-12)"
cp -a "$2" "$3/$id"
echo "Creating snapshot of VM $1 (label: $4)..."
echo "Snapshot $id created in 0.1s; it is ready to use."
`)
		restore := script("restore", `test -d "$2/$1" || { echo "no snapshot $1" >&2; exit 1; }
rm -rf "$3"; cp -a "$2/$1" "$3"`)
		del := script("delete", `test -d "$2/$1" || { echo "no snapshot $1" >&2; exit 1; }
rm -rf "$2/$1"`)
		parse := func(text string) *Template {
			tpl, err := ParseTemplate(text)
			if err != nil {
				t.Fatal(err)
			}
			return tpl
		}
		return fixture{data: data, p: &Command{
			CreateCmd:  parse(create + " {{.VMID}} " + data + " " + store + " {{.Label}}"),
			RestoreCmd: parse(restore + " {{.ID}} " + store + " " + data),
			DeleteCmd:  parse(del + " {{.ID}} " + store),
			IDPattern:  regexp.MustCompile(`commit-[a-z0-9]+`),
			VMID:       "vm-1",
		}}
	})
}

func TestCommandTemplateKeepsValuesOneArgument(t *testing.T) {
	tpl, err := ParseTemplate("snap --label {{.Label}} --vm {{.VMID}}")
	if err != nil {
		t.Fatal(err)
	}
	argv, err := tpl.Argv(Vars{Label: "a; rm -rf / $(x)", VMID: "vm 2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"snap", "--label", "a; rm -rf / $(x)", "--vm", "vm 2"}; fmt.Sprint(argv) != fmt.Sprint(want) {
		t.Fatalf("argv %q, want %q", argv, want)
	}
	for _, bad := range []string{"snap {{.Nope}}", "snap {{.VMID", ""} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestCommandCreateFails(t *testing.T) {
	fail, err := ParseTemplate("false")
	if err != nil {
		t.Fatal(err)
	}
	c := &Command{CreateCmd: fail, IDPattern: regexp.MustCompile(`.+`)}
	if _, err := c.Create(context.Background(), Request{}); err == nil || !strings.Contains(err.Error(), "exited with code 1") {
		t.Fatalf("err = %v", err)
	}
	noID, _ := ParseTemplate("echo done")
	c.CreateCmd, c.IDPattern = noID, regexp.MustCompile(`snap-\d+`)
	if _, err := c.Create(context.Background(), Request{}); err == nil || !strings.Contains(err.Error(), "no id matching") {
		t.Fatalf("err = %v", err)
	}
	if err := c.Restore(context.Background(), "x"); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("restore without a command: %v", err)
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree lists every file under dir with its content, sorted.
func readTree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if e.IsDir() {
			lines = append(lines, rel+"/")
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lines = append(lines, rel+"="+string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
