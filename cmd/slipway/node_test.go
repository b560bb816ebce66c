package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeAppBuildReuseAndAuth(t *testing.T) {
	t.Parallel()
	a := newApp(t, "node-web", nil)
	first := a.head()
	r := a.mustDeploy()
	a.assertServing(first)
	if !strings.Contains(r.stderr, "build:deps") || strings.Contains(r.stderr, "reused node_modules") {
		t.Fatalf("first deploy must run npm ci:\n%s", r.stderr)
	}
	if code, _ := a.get("/api/hello", false); code != 401 {
		t.Fatalf("anonymous /api/hello = %d", code)
	}
	if _, err := os.Stat(filepath.Join(a.root, "current", "dist", "server.js")); err != nil {
		t.Fatalf("no build output: %v", err)
	}

	t.Run("unchanged deps reuse node_modules, the bundle is rebuilt", func(t *testing.T) {
		a := a.with(t)
		next := a.edit("say hi", "src/server.js", "message: 'hello'", "message: 'hello', greeting: 'hello there'")
		r := a.mustDeploy()
		if !strings.Contains(r.stderr, "reused node_modules") {
			t.Fatalf("node_modules not reused:\n%s", r.stderr)
		}
		a.assertServing(next)
		if code, body := a.get("/api/hello", true); code != 200 || !strings.Contains(body, "hello there") {
			t.Fatalf("new build not served: %d %s", code, body)
		}
	})

	t.Run("a docs-only change reuses the bundle too", func(t *testing.T) {
		a := a.with(t)
		next := a.commit("docs", map[string]string{"README": "docs\n"})
		r := a.mustDeploy()
		if !strings.Contains(r.stderr, "reused node_modules") || !strings.Contains(r.stderr, "reused dist") {
			t.Fatalf("want node_modules and dist reused:\n%s", r.stderr)
		}
		a.assertServing(next)
		if code, body := a.get("/api/hello", true); code != 200 || !strings.Contains(body, "hello there") {
			t.Fatalf("reused bundle not served: %d %s", code, body)
		}
	})

	t.Run("a failed build never serves stale output", func(t *testing.T) {
		a := a.with(t)
		live := a.current()
		a.edit("break the build", "src/server.js", "const http = require", "const http = ;\nconst x = require")
		r := a.slipway("deploy")
		if r.code != 1 || !strings.Contains(r.stderr, "build:bundle") {
			t.Fatalf("want build failure: %s", r)
		}
		if a.current() != live {
			t.Fatal("current switched after a failed build")
		}
	})
}
