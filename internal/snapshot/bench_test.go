package snapshot

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The snapshots' figures: a data snapshot of a 1 GiB shared
// directory (one 500 MB SQLite database under writes, the rest mixed
// files), against `tar | zstd` of the same tree; then its restore.
//
//	go test -run '^$' -bench 'DataSnapshot|DataRestore|TarZstd' -benchtime 1x ./internal/snapshot/
const (
	benchDBBytes    = 500 << 20
	benchFilesBytes = 524 << 20
)

// benchRoot is the benchmarks' tree, removed by TestMain.
var benchRoot string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRoot != "" {
		_ = os.RemoveAll(benchRoot)
	}
	os.Exit(code)
}

var benchTree = sync.OnceValues(func() (string, error) {
	root, err := os.MkdirTemp("/var/tmp", "slipway-snapshot-bench-")
	if err != nil {
		return "", err
	}
	benchRoot = root
	data := filepath.Join(root, "shared", "data")
	if err := os.MkdirAll(filepath.Join(data, "uploads"), 0o755); err != nil {
		return "", err
	}
	// Mixed files: a third random (photos, archives), the rest text-like.
	rng := mrand.New(mrand.NewPCG(1, 2))
	words := strings.Fields("deploy release commit rollback health snapshot ledger agent service migrate board task worker")
	for i, written := 0, 0; written < benchFilesBytes; i++ {
		size := 64<<10 + rng.IntN(448<<10)
		buf := make([]byte, size)
		if i%3 == 0 {
			_, _ = rand.Read(buf)
		} else {
			var b strings.Builder
			for b.Len() < size {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			copy(buf, b.String())
		}
		if err := os.WriteFile(filepath.Join(data, "uploads", fmt.Sprintf("f%05d", i)), buf, 0o644); err != nil {
			return "", err
		}
		written += size
	}
	// The database: rows of half random, half repetitive payload.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "app.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return "", err
	}
	defer func() { _ = db.Close() }()
	if _, err := db.Exec("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, body BLOB)"); err != nil {
		return "", err
	}
	row := make([]byte, 4096)
	for total := 0; total < benchDBBytes; {
		tx, err := db.Begin()
		if err != nil {
			return "", err
		}
		for range 1000 {
			_, _ = rand.Read(row[:2048])
			copy(row[2048:], strings.Repeat("event payload ", 147))
			if _, err := tx.Exec("INSERT INTO events (kind, body) VALUES (?, ?)", words[rng.IntN(len(words))], row); err != nil {
				return "", err
			}
			total += len(row)
		}
		if err := tx.Commit(); err != nil {
			return "", err
		}
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return "", err
	}
	return root, nil
})

func benchData(b *testing.B) (*Data, int64) {
	b.Helper()
	root, err := benchTree()
	if err != nil {
		b.Fatal(err)
	}
	d := &Data{Shared: filepath.Join(root, "shared"), Paths: []string{"data"}, Dir: filepath.Join(root, "snapshots")}
	var size int64
	_ = filepath.Walk(filepath.Join(d.Shared, "data"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	return d, size
}

// writer keeps writing to the database until stopped, as the app would.
func writer(b *testing.B, d *Data) (stop func() int64) {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.Shared, "data", "app.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Bool
	var n atomic.Int64
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for !done.Load() {
			if _, err := db.Exec("INSERT INTO events (kind, body) VALUES ('live', randomblob(2048))"); err == nil {
				n.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() int64 {
		done.Store(true)
		<-finished
		_ = db.Close()
		return n.Load()
	}
}

func BenchmarkDataSnapshot(b *testing.B) {
	d, size := benchData(b)
	b.SetBytes(size)
	// Each round takes a snapshot under writes, then deletes the one
	// before it, as pruning does: both are timed, each on its own.
	var last Taken
	var create, del time.Duration
	var deletes int
	for b.Loop() {
		stop := writer(b, d)
		t0 := time.Now()
		taken, err := d.Create(context.Background(), Request{Label: "bench"})
		create += time.Since(t0)
		writes := stop()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("snapshot of %.0f MB: archive %.0f MB, %d rows written meanwhile", float64(size)/1e6, float64(taken.Size)/1e6, writes)
		if last.ID != "" {
			t0 := time.Now()
			if err := d.Delete(context.Background(), last.ID); err != nil {
				b.Fatal(err)
			}
			del += time.Since(t0)
			deletes++
		}
		last = taken
	}
	// The last one goes too (so that one round, -benchtime 1x, times a
	// delete as well).
	t0 := time.Now()
	if err := d.Delete(context.Background(), last.ID); err != nil {
		b.Fatal(err)
	}
	del += time.Since(t0)
	deletes++
	b.ReportMetric(create.Seconds()/float64(b.N), "s/snapshot")
	b.ReportMetric(del.Seconds()/float64(deletes), "s/delete")
}

func BenchmarkDataRestore(b *testing.B) {
	d, size := benchData(b)
	taken, err := d.Create(context.Background(), Request{Label: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if err := d.Restore(context.Background(), taken.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restore")
}

// BenchmarkTarZstd is the hand-run way, for comparison: tar | zstd (level
// 3, all cores) of the same tree, the live database copied raw.
func BenchmarkTarZstd(b *testing.B) {
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Skip("zstd is not installed")
	}
	d, size := benchData(b)
	out := filepath.Join(filepath.Dir(d.Shared), "tar.zst")
	b.SetBytes(size)
	for b.Loop() {
		stop := writer(b, d)
		cmd := exec.Command("sh", "-c", `tar -C "$1" -cf - data | zstd -q -3 -T0 -f -o "$2"`, "sh", d.Shared, out)
		o, err := cmd.CombinedOutput()
		stop()
		if err != nil {
			b.Fatalf("tar | zstd: %v %s", err, o)
		}
	}
	if fi, err := os.Stat(out); err == nil {
		b.Logf("tar | zstd archive: %.0f MB", float64(fi.Size())/1e6)
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/snapshot")
}
