package proxy

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// BenchmarkRoute is the proxy's own cost per request, in one process: 16
// clients back to back for 2 s against a Go backend that answers "ok",
// directly and through a route. Profile it with -cpuprofile; the figures
// that count are BenchmarkProxy* in cmd/slipway, across processes.
func BenchmarkRoute(b *testing.B) {
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = backend.Serve(bl) }()
	b.Cleanup(func() { _ = backend.Close() })
	s := &Server{StatePath: filepath.Join(b.TempDir(), "proxy.json")}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	_ = ln.Close()
	if err := s.EnsureServing("web", listen, "", bl.Addr().String(), "r1"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Remove("web") })
	for _, c := range []struct{ name, url string }{
		{"direct", "http://" + bl.Addr().String() + "/"},
		{"proxy", "http://" + listen + "/"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var rps float64
			for b.Loop() {
				rps = testkit.ClosedLoop(c.url, 16, 2*time.Second)
			}
			b.ReportMetric(rps, "req/s")
		})
	}
}
