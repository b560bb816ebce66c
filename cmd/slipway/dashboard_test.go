package main_test

import (
	"context"
	"fmt"
	"net/http"
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

// tab is a browser tab on the dashboard at base.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newTab(t *testing.T, base string) *tab { return &tab{t: t, ctx: browser(t), base: base} }

// do runs steps, failing the test with what if they fail or take 30 s.
func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text is the visible text of the first element sel matches.
func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("the text of %s: %v", sel, err)
	}
	return s
}

// eval is what expression (awaited, if a promise) gives in the page.
func eval[T any](b *tab, expression string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expression, err)
	}
	return v
}

// open navigates to path and waits for sel.
func (b *tab) open(path, sel string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// loaded is the page's load after trigger (a click or a submit).
func loaded(trigger chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, trigger))
		return err
	})
}

// click clicks sel and waits for the page it loads.
func (b *tab) click(sel string) {
	b.t.Helper()
	b.do("click "+sel, loaded(chromedp.Click(chromedp.CSS(sel))))
}

func (b *tab) signIn(token, name string) {
	b.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(b.base + "/signin"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token)}
	if name != "" {
		steps = append(steps, chromedp.SendKeys(chromedp.CSS("#name"), name))
	}
	b.do("sign in", append(steps, loaded(chromedp.Submit(chromedp.CSS("#token"))))...)
}

// screenshot saves the page under the test's artifact directory (kept with
// go test -artifacts).
func (b *tab) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(b.t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// The dashboard in a real browser against the real agent: signed out only
// the banner; a wrong token, then the right one; the session cookie's
// flags; the status banner; sign-out; failed sign-ins rate-limited.
func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	g.mustDeploy()
	head := g.head()
	b := newTab(t, fmt.Sprintf("http://127.0.0.1:%d", g.apiPort))

	b.do("open /", chromedp.Navigate(b.base+"/"))
	if body := b.text("body"); !strings.Contains(body, "Sign in for status") || strings.Contains(body, head[:7]) {
		t.Fatalf("signed out:\n%s", body)
	}
	b.screenshot("signed-out")
	// Signed out, the pages send the browser to sign in, and the API and
	// its feed refuse.
	for _, path := range []string{"/history", "/history/1", "/services", "/snapshots"} {
		if code, body := g.api("GET", path, "", false); code != http.StatusOK || !strings.Contains(body, `action="/signin"`) || strings.Contains(body, head[:7]) {
			t.Errorf("GET %s signed out (redirects followed): %d\n%s", path, code, body)
		}
	}
	for _, path := range []string{"/status", "/deploys", "/feed/events"} {
		if code, _ := g.api("GET", path, "", false); code != http.StatusUnauthorized {
			t.Errorf("GET %s signed out: %d, want 401", path, code)
		}
	}

	b.signIn("not-the-token", "")
	if msg := b.text(".error"); !strings.Contains(msg, "not right") {
		t.Fatalf("a wrong token: %q", msg)
	}
	b.signIn(apiToken, "")
	b.do("the banner", chromedp.WaitVisible(chromedp.CSS("#banner")))
	if banner := b.text("#banner"); !strings.Contains(banner, head[:7]) || !strings.Contains(banner, "ok") || !strings.Contains(banner, "succeeded") {
		t.Fatalf("the status banner:\n%s", banner)
	}
	b.screenshot("status")
	cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	if c := cookies.Cookies; len(c) != 1 || !c[0].HTTPOnly || c[0].SameSite != network.CookieSameSiteStrict || strings.Contains(c[0].Value, apiToken) {
		t.Fatalf("the session cookie: %+v", c)
	}

	// The history, newest first, and one deploy with its steps' timeline.
	b.open("/history", "table.history")
	if row := b.text("table.history tbody tr"); !strings.Contains(row, head[:7]) || !strings.Contains(row, "succeeded") {
		t.Fatalf("the history's newest row: %q", row)
	}
	b.screenshot("history")
	b.click(`a[href="/history/1"]`)
	b.do("deploy 1", chromedp.WaitVisible(chromedp.CSS("svg.timeline")))
	if steps := b.text("table.steps"); !strings.Contains(steps, "mark-safe") || !strings.Contains(steps, "health") {
		t.Fatalf("deploy 1's steps:\n%s", steps)
	}
	b.screenshot("deploy")

	b.click("form.signout button")
	b.do("signed out", chromedp.WaitVisible(chromedp.CSS(".signed-out")))
	for range 5 { // the limit (the sign-in above cleared the first failure)
		b.signIn("wrong", "")
	}
	b.signIn(apiToken, "")
	if msg := b.text(".error"); !strings.Contains(msg, "Too many") {
		t.Fatalf("after five failures the right token: %q", msg)
	}
	b.screenshot("rate-limited")
}

// waitText waits until the text of sel holds want.
func (b *tab) waitText(sel, want string) string {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel))
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s never said %q; it says:\n%s", sel, want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// confirm asks for an action with the form sel and says yes.
func (b *tab) confirm(sel, question string) {
	b.t.Helper()
	b.click(sel + " button")
	if q := b.text(".confirm"); !strings.Contains(q, question) {
		b.t.Fatalf("the confirmation of %s: %q, want %q", sel, q, question)
	}
	b.click(".confirm .yes")
}

// The dashboard's actions in a real browser against the real agent, each
// confirmed: a deploy from the page with its steps streaming in; the
// banner changing when a deploy ends; a failing deploy shown red; a
// rollback chosen from the history; freeze and unfreeze; a snapshot
// restored; the services and their logs. A forged post without the CSRF
// token and a viewer's action are refused.
func TestDashboardActions(t *testing.T) {
	t.Parallel()
	const viewerToken = "viewer-token-0123456789"
	g := newAgentApp(t, "0", func(cfg string) string {
		cfg = withSnapshots("  data: [data]\n")(cfg)
		// A commit with a PAUSE file builds for 1.5 s: long enough to
		// watch its steps come in.
		return strings.Replace(cfg, "\nmigrate:", "\n  - name: pause\n    run: sh -c 'if [ -f PAUSE ]; then sleep 1.5; fi'\n\nmigrate:", 1)
	})
	cfg := readFile(t, g.cfgPath)
	if err := os.WriteFile(g.cfgPath, []byte(strings.Replace(cfg, "  token_env: API_TOKEN\n", "  token_env: API_TOKEN\n  viewer_token_env: VIEWER_TOKEN\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	g.env = []string{"VIEWER_TOKEN=" + viewerToken}
	g.start(t)
	g.mustDeploy()
	r := g.slipway("snapshot", "create", "--label", "before-web")
	if r.code != 0 {
		t.Fatalf("snapshot create: %s", r)
	}
	snap := strings.Fields(r.stdout)[0]
	b := newTab(t, fmt.Sprintf("http://127.0.0.1:%d", g.apiPort))
	b.signIn(apiToken, "alice")
	b.open("/", "#banner")

	// A deploy of a chosen commit from the page: its steps stream in, then
	// the page shows how it ended.
	second := g.commit("pause the build", map[string]string{"PAUSE": "1\n"})
	b.do("the commit", chromedp.SendKeys(chromedp.CSS("#commit"), second))
	b.click("form.deploy button")
	if q := b.text(".confirm"); !strings.Contains(q, "Deploy commit "+second) {
		t.Fatalf("the deploy's confirmation: %q", q)
	}
	b.screenshot("confirm")
	b.click(".confirm .yes")
	b.do("steps streaming in", chromedp.WaitVisible(chromedp.CSS("#live tbody tr[data-ended]")))
	lag := eval[[]float64](b, `Array.from(document.querySelectorAll("#live tbody tr")).map(tr => Date.parse(tr.dataset.shown) - Date.parse(tr.dataset.at))`)
	b.screenshot("deploy-live")
	b.do("the deploy's end", chromedp.WaitVisible(chromedp.CSS("#deploy .outcome.succeeded")))
	t.Logf("figure: step end to its line on the screen: %v ms (%d lines)", lag, len(lag))
	for _, ms := range lag {
		if ms < 0 || ms > 2000 {
			t.Errorf("a step's line came %v ms after the step (its clock and the host's are one)", ms)
		}
	}
	if d := b.text("#deploy"); !strings.Contains(d, "web by web:alice") || !strings.Contains(d, second[:7]) {
		t.Fatalf("the deploy from the page:\n%s", d)
	}

	// The status page follows a deploy started elsewhere, and its banner
	// changes when it ends.
	b.open("/", "#banner")
	third := g.commit("third", map[string]string{"THIRD": "3\n"})
	done := make(chan result, 1)
	go func() { done <- g.slipway("deploy") }()
	b.do("the status page's live steps", chromedp.WaitVisible(chromedp.CSS("#live tbody tr")))
	b.screenshot("status-live")
	b.waitText("#banner", third[:7])
	if r := <-done; r.code != 0 {
		t.Fatalf("the CLI's deploy: %s", r)
	}

	// A failing deploy is red, with its error, what is live and what next.
	bad := g.edit("health says 500", "backend/app.py",
		`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
		`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
	b.open("/", "#banner")
	b.do("the bad commit", chromedp.SendKeys(chromedp.CSS("#commit"), bad))
	b.confirm("form.deploy", "Deploy commit "+bad)
	b.do("the failure", chromedp.WaitVisible(chromedp.CSS("#deploy.failing")))
	if d := b.text("#deploy"); !strings.Contains(d, "health") || !strings.Contains(d, "rolled back") || !strings.Contains(d, third[:7]) || !strings.Contains(d, "marked bad") {
		t.Fatalf("the failed deploy's page:\n%s", d)
	}
	b.screenshot("deploy-failed")

	// A rollback chosen from the history.
	b.open("/history", "svg.durations")
	b.screenshot("history")
	b.confirm(fmt.Sprintf(`form.rollback-to:has(input[value="%s"])`, second), "Roll back to the release of commit "+second)
	b.do("the rollback's end", chromedp.WaitVisible(chromedp.CSS("#deploy .outcome.succeeded")))
	b.open("/", "#banner")
	if banner := b.text("#banner"); !strings.Contains(banner, "current "+second[:7]) && !strings.Contains(banner, second[:7]) {
		t.Fatalf("after the rollback:\n%s", banner)
	}
	g.assertServing(second)

	// Freeze, a deploy refused while frozen, unfreeze.
	b.do("the message", chromedp.SendKeys(chromedp.CSS("#message"), "release party"))
	b.confirm("form.freeze", "release party")
	b.waitText("#banner .lock", "frozen: release party (by web:alice)")
	b.screenshot("frozen")
	b.confirm("form.deploy", "Deploy the branch's tip")
	if msg := b.text(".error"); !strings.Contains(msg, "release party") {
		t.Fatalf("a deploy while frozen: %q", msg)
	}
	b.open("/", "#banner")
	b.confirm("form.unfreeze", "Unfreeze")
	b.waitText("#banner .lock", "free")
	if ev := g.slipway("history", "--events"); !strings.Contains(ev.stdout, "deploys frozen by web:alice: release party") || !strings.Contains(ev.stdout, "deploys unfrozen by web:alice") {
		t.Fatalf("the ledger's events:\n%s", ev)
	}

	// A forged post, without the CSRF token, is refused.
	if code := eval[int](b, `fetch("/actions/freeze", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "message=forged&confirm=yes"}).then(r => r.status)`); code != http.StatusForbidden {
		t.Fatalf("a forged post: %d, want 403", code)
	}

	// A snapshot restored from its page.
	b.open("/snapshots", "table.snapshots")
	row := fmt.Sprintf(`table.snapshots tr:has(input[value="%s"])`, snap)
	if text := b.text(row); !strings.Contains(text, "before-web") || !strings.Contains(text, " B") && !strings.Contains(text, "KiB") {
		t.Fatalf("the snapshot's row: %q", text)
	}
	b.confirm(fmt.Sprintf(`form:has(input[value="%s"])`, snap), "Restore snapshot "+snap)
	b.do("the snapshots page", chromedp.WaitVisible(chromedp.CSS("table.snapshots")))
	if text := b.text(row); !strings.Contains(text, time.Now().UTC().Format("2006-01-02")+" ") || strings.Count(text, " UTC") != 2 {
		t.Fatalf("the restored snapshot's row: %q", text)
	}
	b.screenshot("snapshots")
	var restored deployRow
	for _, d := range g.history() {
		if d.Kind == "restore" {
			restored = d
		}
	}
	if restored.Outcome != "succeeded" || restored.Actor != "web:alice" {
		t.Fatalf("the restore in the ledger: %+v", restored)
	}

	// The services and the tails of their logs.
	b.open("/services", "table.services")
	if s := b.text("table.services"); !strings.Contains(s, "backend") || !strings.Contains(s, "running") {
		t.Fatalf("the services page:\n%s", s)
	}
	b.screenshot("services")

	// A viewer sees everything and is refused every change.
	b.click("form.signout button")
	b.signIn(viewerToken, "vera")
	b.open("/", "#banner")
	if note := b.text(".actions .note"); !strings.Contains(note, "change nothing") {
		t.Fatalf("a viewer's actions: %q", note)
	}
	b.do("enable the button", chromedp.RemoveAttribute(chromedp.CSS("form.freeze button"), "disabled"),
		chromedp.SendKeys(chromedp.CSS("#message"), "nope"))
	b.click("form.freeze button")
	if msg := b.text(".error"); !strings.Contains(msg, "viewer") {
		t.Fatalf("a viewer's freeze: %q", msg)
	}
	b.screenshot("viewer-refused")
	if st := g.slipway("lock", "status"); strings.Contains(st.stdout, "frozen") {
		t.Fatalf("after the refused posts:\n%s", st)
	}
}
