package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDescribe(t *testing.T) {
	const sha, prev = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"
	cases := []struct {
		name string
		m    Message
		want string
	}{
		{"success",
			Message{App: "board", Commit: sha, Previous: prev, Outcome: Succeeded, Duration: 41*time.Second + 300*time.Millisecond, DeployID: 12},
			"board: deploy 12 of 1a2b3c4 succeeded in 41.3s, replacing 9f8e7d6"},
		{"first success",
			Message{App: "board", Commit: sha, Outcome: Succeeded, Duration: 2*time.Minute + 5400*time.Millisecond, DeployID: 1},
			"board: deploy 1 of 1a2b3c4 succeeded in 2m5s"},
		{"failure before the switch",
			Message{App: "board", Commit: sha, Outcome: Failed, Duration: 3200 * time.Millisecond, DeployID: 12, Error: "build: backend deps: exit status 1"},
			"board: deploy 12 of 1a2b3c4 failed at build after 3.2s: backend deps: exit status 1"},
		{"failure rolled back",
			Message{App: "board", Commit: sha, Previous: prev, Outcome: RolledBack, Duration: 3200 * time.Millisecond, DeployID: 12, Error: "health: status 503 after 60s"},
			"board: deploy 12 of 1a2b3c4 failed at health after 3.2s and was rolled back to 9f8e7d6: status 503 after 60s"},
		{"rollback that failed too",
			Message{App: "board", Commit: sha, Outcome: Failed, DeployID: 7, Error: "smoke: got 200, want 401; rollback failed too: health: refused"},
			"board: deploy 7 of 1a2b3c4 failed at smoke: got 200, want 401; rollback failed too: health: refused"},
		{"interrupted",
			Message{App: "board", Commit: sha, Outcome: Interrupted, Duration: 900 * time.Millisecond, DeployID: 4, Error: "migrate: signal: terminated"},
			"board: deploy 4 of 1a2b3c4 was interrupted at migrate after 900ms: signal: terminated"},
		{"error without a step",
			Message{App: "board", Commit: sha, Outcome: Failed, DeployID: 4, Error: "deploy: disk full"},
			"board: deploy 4 of 1a2b3c4 failed: disk full"},
		{"error that only looks like a step",
			Message{App: "board", Commit: sha, Outcome: Failed, DeployID: 4, Error: "open /x: permission denied"},
			"board: deploy 4 of 1a2b3c4 failed: open /x: permission denied"},
		{"manual rollback",
			Message{App: "board", Commit: prev, Previous: sha, Outcome: Rollback, Duration: 5 * time.Second, DeployID: 13},
			"board: rolled back to 9f8e7d6 from 1a2b3c4 in 5s"},
		{"manual rollback that failed",
			Message{App: "board", Commit: prev, Outcome: Rollback, DeployID: 13, Error: "health: refused"},
			"board: rollback to 9f8e7d6 failed at health: refused"},
		{"unknown outcome, no app, no id",
			Message{Commit: "abc", Outcome: "skipped"},
			"slipway: deploy of abc skipped"},
		{"only the first line of a long error",
			Message{App: "board", Outcome: Failed, DeployID: 2, Error: "build: npm ERR!   code 1\nnpm ERR! stack trace\n..."},
			"board: deploy 2 failed at build: npm ERR! code 1"},
		{"links lose their scheme, credentials and query",
			Message{App: "board", Outcome: Failed, DeployID: 2, Error: `health: Get "http://127.0.0.1:8000/health?token=abc": dial tcp: refused; see https://u:p@ci.example.com/run/9.`},
			`board: deploy 2 failed at health: Get "127.0.0.1:8000/health": dial tcp: refused; see ci.example.com/run/9.`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Describe(c.m); got != c.want {
				t.Errorf("Describe =\n  %q\nwant\n  %q", got, c.want)
			}
		})
	}
}

func TestDescribeShortensLongErrors(t *testing.T) {
	got := Describe(Message{App: "board", Outcome: Failed, Error: "build: " + strings.Repeat("é", 1000)})
	if n := len([]rune(got)); n > 350 || !strings.HasSuffix(got, "…") {
		t.Errorf("%d runes, ending %q", n, got[len(got)-10:])
	}
}

func TestMessageJSONRoundTrip(t *testing.T) {
	m := Message{
		App: "board", Commit: "1a2b", Previous: "9f8e", Outcome: RolledBack, Duration: 1500 * time.Millisecond,
		Error: "health: 503", DeployID: 9, Host: "web-1", Text: "board: …", Time: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC),
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"duration_seconds":1.5`) {
		t.Errorf("JSON %s lacks duration_seconds", b)
	}
	var back Message
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != m {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, m)
	}
}
