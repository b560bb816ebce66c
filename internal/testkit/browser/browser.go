// Package browser drives a headless Chromium (Debian's chromium) over the
// DevTools protocol, for the dashboard's tests.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// start starts a headless Chromium (Debian's chromium) driven over the
// DevTools protocol; it is skipped where none is installed, as
// `scripts/setup.sh --tests` installs one.
func start(t *testing.T) context.Context {
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

// Tab is a browser tab on the dashboard at Base.
type Tab struct {
	t    *testing.T
	Ctx  context.Context
	Base string
}

// New is a tab of a new browser on the dashboard at base; the test is
// skipped where no chromium is installed.
func New(t *testing.T, base string) *Tab { return &Tab{t: t, Ctx: start(t), Base: base} }

// Do runs steps, failing the test with what if they fail or take 30 s.
func (b *Tab) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Text is the visible text of the first element sel matches, once there
// is one. It is read in the page, not through a DOM node id, which a page
// that replaced its document meanwhile no longer has ("No node with given
// id found").
func (b *Tab) Text(sel string) string {
	b.t.Helper()
	expr := fmt.Sprintf(`(e => e ? {text: e.innerText, found: true} : {found: false})(document.querySelector(%q))`, sel)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// An evaluation that a navigation cut short is tried again.
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[textOf](expr))
		cancel()
		if err == nil && v.Found {
			return v.Text
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the text of %s: no element matches (%v)", sel, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// textOf is what Text reads in the page.
type textOf struct {
	Text  string `json:"text"`
	Found bool   `json:"found"`
}

// Eval is what expression (awaited, if a promise) gives in the page.
func Eval[T any](b *Tab, expression string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expression, err)
	}
	return v
}

// Open navigates to path and waits for sel.
func (b *Tab) Open(path, sel string) {
	b.t.Helper()
	b.Do("open "+path, chromedp.Navigate(b.Base+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// Loaded is the page's load after trigger (a click or a submit).
func Loaded(trigger chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, trigger))
		return err
	})
}

// Click clicks sel and waits for the page it loads.
func (b *Tab) Click(sel string) {
	b.t.Helper()
	b.Do("click "+sel, Loaded(chromedp.Click(chromedp.CSS(sel))))
}

// SignIn signs in with token, and name for the ledger when not empty.
func (b *Tab) SignIn(token, name string) {
	b.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(b.Base + "/signin"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token)}
	if name != "" {
		steps = append(steps, chromedp.SendKeys(chromedp.CSS("#name"), name))
	}
	b.Do("sign in", append(steps, Loaded(chromedp.Submit(chromedp.CSS("#token"))))...)
}

// Screenshot saves the page under the test's artifact directory (kept with
// go test -artifacts).
func (b *Tab) Screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(b.t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// WaitText waits until the text of sel holds want. It reads through Text,
// so a page that reloads itself meanwhile (the status page at the end of
// a deploy) is read again.
func (b *Tab) WaitText(sel, want string) string {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := b.Text(sel)
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s never said %q; it says:\n%s", sel, want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Confirm asks for an action with the form sel and says yes.
func (b *Tab) Confirm(sel, question string) {
	b.t.Helper()
	b.Click(sel + " button")
	if q := b.Text(".confirm"); !strings.Contains(q, question) {
		b.t.Fatalf("the confirmation of %s: %q, want %q", sel, q, question)
	}
	b.Click(".confirm .yes")
}
