package main_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/slipway-dev/slipway/internal/testkit/browser"
)

// The dashboard in a real browser against the real agent: signed out only
// the banner; a wrong token, then the right one; the session cookie's
// flags; the status banner; sign-out; failed sign-ins rate-limited.
func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	g.mustDeploy()
	head := g.head()
	b := browser.New(t, fmt.Sprintf("http://127.0.0.1:%d", g.apiPort))

	b.Do("open /", chromedp.Navigate(b.Base+"/"))
	if body := b.Text("body"); !strings.Contains(body, "Sign in for status") || strings.Contains(body, head[:7]) {
		t.Fatalf("signed out:\n%s", body)
	}
	b.Screenshot("signed-out")
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

	b.SignIn("not-the-token", "")
	if msg := b.Text(".error"); !strings.Contains(msg, "not right") {
		t.Fatalf("a wrong token: %q", msg)
	}
	b.SignIn(apiToken, "")
	b.Do("the banner", chromedp.WaitVisible(chromedp.CSS("#banner")))
	if banner := b.Text("#banner"); !strings.Contains(banner, head[:7]) || !strings.Contains(banner, "ok") || !strings.Contains(banner, "succeeded") {
		t.Fatalf("the status banner:\n%s", banner)
	}
	b.Screenshot("status")
	cookies, err := chromedp.Call(b.Ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	if c := cookies.Cookies; len(c) != 1 || !c[0].HTTPOnly || c[0].SameSite != network.CookieSameSiteStrict || strings.Contains(c[0].Value, apiToken) {
		t.Fatalf("the session cookie: %+v", c)
	}

	// The history, newest first, and one deploy with its steps' timeline.
	b.Open("/history", "table.history")
	if row := b.Text("table.history tbody tr"); !strings.Contains(row, head[:7]) || !strings.Contains(row, "succeeded") {
		t.Fatalf("the history's newest row: %q", row)
	}
	b.Screenshot("history")
	b.Click(`a[href="/history/1"]`)
	b.Do("deploy 1", chromedp.WaitVisible(chromedp.CSS("svg.timeline")))
	if steps := b.Text("table.steps"); !strings.Contains(steps, "mark-safe") || !strings.Contains(steps, "health") {
		t.Fatalf("deploy 1's steps:\n%s", steps)
	}
	b.Screenshot("deploy")

	b.Click("form.signout button")
	b.Do("signed out", chromedp.WaitVisible(chromedp.CSS(".signed-out")))
	for range 5 { // the limit (the sign-in above cleared the first failure)
		b.SignIn("wrong", "")
	}
	b.SignIn(apiToken, "")
	if msg := b.Text(".error"); !strings.Contains(msg, "Too many") {
		t.Fatalf("after five failures the right token: %q", msg)
	}
	b.Screenshot("rate-limited")
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
	b := browser.New(t, fmt.Sprintf("http://127.0.0.1:%d", g.apiPort))
	b.SignIn(apiToken, "alice")
	b.Open("/", "#banner")

	// A deploy of a chosen commit from the page: its steps stream in, then
	// the page shows how it ended.
	second := g.commit("pause the build", map[string]string{"PAUSE": "1\n"})
	b.Do("the commit", chromedp.SendKeys(chromedp.CSS("#commit"), second))
	b.Click("form.deploy button")
	if q := b.Text(".confirm"); !strings.Contains(q, "Deploy commit "+second) {
		t.Fatalf("the deploy's confirmation: %q", q)
	}
	b.Screenshot("confirm")
	b.Click(".confirm .yes")
	b.Do("steps streaming in", chromedp.WaitVisible(chromedp.CSS("#live tbody tr[data-ended]")))
	lag := browser.Eval[[]float64](b, `Array.from(document.querySelectorAll("#live tbody tr")).map(tr => Date.parse(tr.dataset.shown) - Date.parse(tr.dataset.at))`)
	b.Screenshot("deploy-live")
	b.Do("the deploy's end", chromedp.WaitVisible(chromedp.CSS("#deploy .outcome.succeeded")))
	t.Logf("figure: step end to its line on the screen: %v ms (%d lines)", lag, len(lag))
	for _, ms := range lag {
		if ms < 0 || ms > 2000 {
			t.Errorf("a step's line came %v ms after the step (its clock and the host's are one)", ms)
		}
	}
	if d := b.Text("#deploy"); !strings.Contains(d, "web by web:alice") || !strings.Contains(d, second[:7]) {
		t.Fatalf("the deploy from the page:\n%s", d)
	}

	// The status page follows a deploy started elsewhere, and its banner
	// changes when it ends.
	b.Open("/", "#banner")
	third := g.commit("third", map[string]string{"THIRD": "3\n"})
	done := make(chan result, 1)
	go func() { done <- g.slipway("deploy") }()
	b.Do("the status page's live steps", chromedp.WaitVisible(chromedp.CSS("#live tbody tr")))
	b.Screenshot("status-live")
	b.WaitText("#banner", third[:7])
	if r := <-done; r.code != 0 {
		t.Fatalf("the CLI's deploy: %s", r)
	}

	// A failing deploy is red, with its error, what is live and what next.
	bad := g.edit("health says 500", "backend/app.py",
		`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
		`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
	b.Open("/", "#banner")
	b.Do("the bad commit", chromedp.SendKeys(chromedp.CSS("#commit"), bad))
	b.Confirm("form.deploy", "Deploy commit "+bad)
	b.Do("the failure", chromedp.WaitVisible(chromedp.CSS("#deploy.failing")))
	if d := b.Text("#deploy"); !strings.Contains(d, "health") || !strings.Contains(d, "rolled back to "+third[:7]) || !strings.Contains(d, "marked bad") {
		t.Fatalf("the failed deploy's page:\n%s", d)
	}
	b.Screenshot("deploy-failed")

	// A rollback chosen from the history.
	b.Open("/history", "svg.durations")
	b.Screenshot("history")
	b.Confirm(fmt.Sprintf(`form.rollback-to:has(input[value="%s"])`, second), "Roll back to the release of commit "+second)
	b.Do("the rollback's end", chromedp.WaitVisible(chromedp.CSS("#deploy .outcome.succeeded")))
	b.Open("/", "#banner")
	if banner := b.Text("#banner"); !strings.Contains(banner, "current "+second[:7]) && !strings.Contains(banner, second[:7]) {
		t.Fatalf("after the rollback:\n%s", banner)
	}
	g.assertServing(second)

	// Freeze, a deploy refused while frozen, unfreeze.
	b.Do("the message", chromedp.SendKeys(chromedp.CSS("#message"), "release party"))
	b.Confirm("form.freeze", "release party")
	b.WaitText("#banner .lock", "frozen: release party (by web:alice)")
	b.Screenshot("frozen")
	b.Confirm("form.deploy", "Deploy the branch's tip")
	if msg := b.Text(".error"); !strings.Contains(msg, "release party") {
		t.Fatalf("a deploy while frozen: %q", msg)
	}
	b.Open("/", "#banner")
	b.Confirm("form.unfreeze", "Unfreeze")
	b.WaitText("#banner .lock", "free")
	if ev := g.slipway("history", "--events"); !strings.Contains(ev.stdout, "deploys frozen by web:alice: release party") || !strings.Contains(ev.stdout, "deploys unfrozen by web:alice") {
		t.Fatalf("the ledger's events:\n%s", ev)
	}

	// A forged post, without the CSRF token, is refused.
	if code := browser.Eval[int](b, `fetch("/actions/freeze", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "message=forged&confirm=yes"}).then(r => r.status)`); code != http.StatusForbidden {
		t.Fatalf("a forged post: %d, want 403", code)
	}

	// A snapshot restored from its page.
	b.Open("/snapshots", "table.snapshots")
	row := fmt.Sprintf(`table.snapshots tr:has(input[value="%s"])`, snap)
	if text := b.Text(row); !strings.Contains(text, "before-web") || !strings.Contains(text, " B") && !strings.Contains(text, "KiB") {
		t.Fatalf("the snapshot's row: %q", text)
	}
	b.Confirm(fmt.Sprintf(`form:has(input[value="%s"])`, snap), "Restore snapshot "+snap)
	b.Do("the snapshots page", chromedp.WaitVisible(chromedp.CSS("table.snapshots")))
	if text := b.Text(row); !strings.Contains(text, time.Now().UTC().Format("2006-01-02")+" ") || strings.Count(text, " UTC") != 2 {
		t.Fatalf("the restored snapshot's row: %q", text)
	}
	b.Screenshot("snapshots")
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
	b.Open("/services", "table.services")
	if s := b.Text("table.services"); !strings.Contains(s, "backend") || !strings.Contains(s, "running") {
		t.Fatalf("the services page:\n%s", s)
	}
	b.Screenshot("services")

	// A viewer sees everything and is refused every change.
	b.Click("form.signout button")
	b.SignIn(viewerToken, "vera")
	b.Open("/", "#banner")
	if note := b.Text(".actions .note"); !strings.Contains(note, "change nothing") {
		t.Fatalf("a viewer's actions: %q", note)
	}
	b.Do("enable the button", chromedp.RemoveAttribute(chromedp.CSS("form.freeze button"), "disabled"),
		chromedp.SendKeys(chromedp.CSS("#message"), "nope"))
	b.Click("form.freeze button")
	if msg := b.Text(".error"); !strings.Contains(msg, "viewer") {
		t.Fatalf("a viewer's freeze: %q", msg)
	}
	b.Screenshot("viewer-refused")
	if st := g.slipway("lock", "status"); strings.Contains(st.stdout, "frozen") {
		t.Fatalf("after the refused posts:\n%s", st)
	}
}
