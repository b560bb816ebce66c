//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway-dev/slipway/internal/testkit"
	"github.com/slipway-dev/slipway/internal/testkit/browser"
)

// `slipway fleet ui` over the VMs, in a real browser: the grid marks the
// host that drifted from the rest, with the version spread; a rollout
// started from the page runs batch by batch, and a halt from its page
// stops it before its next batch.
func TestFleetUI(t *testing.T) {
	t.Parallel()
	vms := BootAll(t, "ua", "ub", "uc")
	o := newOperator(t, vms)
	o.commit("first", nil)
	o.mustSlipway("fleet", "env", "push", "-i", o.inv, "--from", filepath.Join(o.dir, "secrets"))
	o.mustSlipway("fleet", "install", "-i", o.inv)
	first := o.commit("serve", map[string]string{"index.html": "v1\n"})
	if res, code, out := o.rollout(); code != 0 || res.Outcome != "succeeded" {
		t.Fatalf("first rollout: exit %d\n%s", code, out)
	}
	// ub drifts: it alone takes the second commit.
	second := o.commit("second", map[string]string{"index.html": "v2\n"})
	if res, code, out := o.rollout("--hosts", "ub"); code != 0 || res.Outcome != "succeeded" {
		t.Fatalf("ub's rollout: exit %d\n%s", code, out)
	}

	bin, err := slipwayBin()
	if err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	ui := exec.Command(bin, "fleet", "ui", "-i", o.inv, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--push", "--repo", o.dir, "--batches", "1,100%", "--pause", "4s")
	ui.Dir = o.dir
	ui.Env = append(os.Environ(), "SLIPWAY_HOME="+o.home)
	var logs bytes.Buffer
	ui.Stdout, ui.Stderr = &logs, &logs
	if err := ui.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ui.Process.Signal(syscall.SIGTERM)
		_ = ui.Wait()
		t.Logf("fleet ui said:\n%s", logs.String())
	})
	var token string
	testkit.WaitFor(t, 20*time.Second, "the ui's token", func() bool {
		b, err := os.ReadFile(filepath.Join(o.home, "fleet", "tiny", "ui.token"))
		token = strings.TrimSpace(string(b))
		return err == nil && token != ""
	})
	if strings.Contains(logs.String(), token) {
		t.Fatalf("the ui printed its token:\n%s", logs.String())
	}
	b := browser.New(t, fmt.Sprintf("http://127.0.0.1:%d", port))
	testkit.WaitFor(t, 20*time.Second, "the ui", func() bool {
		return chromedp.Do(b.Ctx, chromedp.Navigate(b.Base+"/")) == nil
	})
	if body := b.Text("body"); !strings.Contains(body, "Sign in for status") || strings.Contains(body, first[:7]) {
		t.Fatalf("signed out:\n%s", body)
	}
	b.SignIn(token, "olga")
	b.Open("/fleet", "table.grid")
	// The grid is gathered in the background: wait for its first round.
	b.WaitText("table.grid", "uc")
	if drift := b.Text(`tr[data-host="ub"] td.current.drift`); !strings.Contains(drift, second[:7]) {
		t.Fatalf("ub's drifted current: %q", drift)
	}
	for _, h := range []string{"ua", "uc"} {
		if n := browser.Eval[int](b, fmt.Sprintf(`document.querySelectorAll('tr[data-host="%s"] .drift').length`, h)); n != 0 {
			t.Errorf("%s is marked drifted in %d cells", h, n)
		}
	}
	if spread := browser.Eval[string](b, `document.querySelector("svg.spread").textContent`); !strings.Contains(spread, first[:7]+" × 2") || !strings.Contains(spread, second[:7]+" × 1") {
		t.Errorf("the version spread: %q", spread)
	}
	b.Screenshot("fleet-grid")

	// A rollout from the page, halted from its page during the pause
	// after its canary: no host starts after it.
	third := o.commit("third", map[string]string{"index.html": "v3\n"})
	b.Do("the commit", chromedp.SendKeys(chromedp.CSS("#commit"), third))
	b.Confirm("form.fleet-deploy", "Roll commit "+third)
	if main := b.Text("main"); !strings.Contains(main, "Batch 1") {
		t.Fatalf("after the rollout was confirmed:\n%s", main)
	}
	b.WaitText(`tr[data-host="ua"] .state`, "done")
	b.Screenshot("fleet-rollout")
	b.Confirm("form.halt", "Halt rollout")
	b.WaitText("#rollout .outcome", "halted")
	for h, want := range map[string]string{"ua": "done", "ub": "not-started", "uc": "not-started"} {
		if got := b.Text(fmt.Sprintf(`tr[data-host="%s"] .state`, h)); got != want {
			t.Errorf("%s after the halt: %q, want %q", h, got, want)
		}
	}
	if d := b.Text("#rollout"); !strings.Contains(d, "stopped by the operator (halt)") || !strings.Contains(d, "web:olga") {
		t.Errorf("the halted rollout:\n%s", d)
	}
	b.Screenshot("fleet-halted")
	st := o.status()
	if st["ua"].Current != third || st["ub"].Current != second || st["uc"].Current != first {
		t.Fatalf("after the halt: ua %s, ub %s, uc %s", st["ua"].Current, st["ub"].Current, st["uc"].Current)
	}

	// Another, reverted from its page: the canary goes back.
	fourth := o.commit("fourth", map[string]string{"index.html": "v4\n"})
	b.Open("/fleet", "form.fleet-deploy")
	b.Do("the commit", chromedp.SendKeys(chromedp.CSS("#commit"), fourth))
	b.Confirm("form.fleet-deploy", "Roll commit "+fourth)
	b.WaitText(`tr[data-host="ua"] .state`, "done")
	b.Confirm("form.revert", "Revert rollout")
	b.WaitText("#rollout .outcome", "reverted")
	if got := b.Text(`tr[data-host="ua"] .state`); got != "reverted" {
		t.Errorf("ua after the revert: %q", got)
	}
	st = o.status()
	if st["ua"].Current != third || st["ub"].Current != second || st["uc"].Current != first {
		t.Fatalf("after the revert: ua %s, ub %s, uc %s", st["ua"].Current, st["ub"].Current, st["uc"].Current)
	}
}
