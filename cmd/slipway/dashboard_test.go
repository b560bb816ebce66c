package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browser is a headless Chromium (Debian's chromium) driven over the
// DevTools protocol; it is skipped where none is installed, as
// `scripts/setup.sh --tests` installs one.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium: scripts/setup.sh --tests installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first run starts the browser, which lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshot saves the page under the test's artifact directory (kept with
// go test -artifacts).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// The dashboard in a real browser against the real agent: signed out only
// the banner; a wrong token, then the right one; the session cookie's
// flags; the status banner; sign-out; failed sign-ins rate-limited.
func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	g := newAgentApp(t, "0", nil)
	g.start(t)
	g.mustDeploy()
	head := g.head()
	base := fmt.Sprintf("http://127.0.0.1:%d", g.apiPort)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("the text of %s: %v", sel, err)
		}
		return s
	}
	// loaded is the page's load after trigger (a click or a submit).
	loaded := func(trigger chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, trigger))
			return err
		})
	}
	signIn := func(token string) {
		t.Helper()
		do("sign in", chromedp.Navigate(base+"/signin"), chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), token), loaded(chromedp.Submit(chromedp.CSS("#token"))))
	}

	do("open /", chromedp.Navigate(base+"/"))
	if body := text("body"); !strings.Contains(body, "Sign in for status") || strings.Contains(body, head[:7]) {
		t.Fatalf("signed out:\n%s", body)
	}
	screenshot(t, ctx, "signed-out")

	signIn("not-the-token")
	if msg := text(".error"); !strings.Contains(msg, "not right") {
		t.Fatalf("a wrong token: %q", msg)
	}
	signIn(apiToken)
	do("the banner", chromedp.WaitVisible(chromedp.CSS("#banner")))
	if banner := text("#banner"); !strings.Contains(banner, head[:7]) || !strings.Contains(banner, "ok") || !strings.Contains(banner, "succeeded") {
		t.Fatalf("the status banner:\n%s", banner)
	}
	screenshot(t, ctx, "status")
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	if c := cookies.Cookies; len(c) != 1 || !c[0].HTTPOnly || c[0].SameSite != network.CookieSameSiteStrict || strings.Contains(c[0].Value, apiToken) {
		t.Fatalf("the session cookie: %+v", c)
	}

	// The history, newest first, and one deploy with its steps' timeline.
	do("history", chromedp.Navigate(base+"/history"), chromedp.WaitVisible(chromedp.CSS("table.history")))
	if row := text("table.history tbody tr"); !strings.Contains(row, head[:7]) || !strings.Contains(row, "succeeded") {
		t.Fatalf("the history's newest row: %q", row)
	}
	screenshot(t, ctx, "history")
	do("deploy 1", loaded(chromedp.Click(chromedp.CSS(`a[href="/history/1"]`))), chromedp.WaitVisible(chromedp.CSS("svg.timeline")))
	if steps := text("table.steps"); !strings.Contains(steps, "mark-safe") || !strings.Contains(steps, "health") {
		t.Fatalf("deploy 1's steps:\n%s", steps)
	}
	screenshot(t, ctx, "deploy")

	do("sign out", loaded(chromedp.Click(chromedp.CSS("form.signout button"))), chromedp.WaitVisible(chromedp.CSS(".signed-out")))
	for range 5 { // the limit (the sign-in above cleared the first failure)
		signIn("wrong")
	}
	signIn(apiToken)
	if msg := text(".error"); !strings.Contains(msg, "Too many") {
		t.Fatalf("after five failures the right token: %q", msg)
	}
	screenshot(t, ctx, "rate-limited")
}
