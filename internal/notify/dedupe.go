package notify

import (
	"fmt"
	"time"
)

// A failing commit that is retried (by the poller, a webhook burst, an
// operator) fails the same way each time. Its notification goes out once,
// then at most once per ReminderEvery while it repeats; a success forgets
// every failure, so the next one is news again.

// failureKey is what makes two failures "the same".
type failureKey struct{ outcome, commit, err string }

// sentFailure is the last time a failure's notification went out, and how
// many identical ones were held back since.
type sentFailure struct {
	at         time.Time
	suppressed int
	since      time.Time // when the first held-back one happened
}

// maxRemembered bounds the failures remembered between two successes.
const maxRemembered = 256

// ticket records one admitted failure, so an undelivered notification can
// be taken back: nobody heard of it, so its next occurrence is news.
type ticket struct {
	dedupe  bool
	key     failureKey
	at      time.Time
	prev    sentFailure
	hadPrev bool
}

// admit decides whether m goes out now. Successes and manual rollbacks
// always do; a success also forgets every failure.
func (n *Notifier) admit(m Message, now time.Time) (ticket, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch m.Outcome {
	case Succeeded:
		clear(n.failures)
		return ticket{}, true
	case Rollback:
		return ticket{}, true
	}
	same := m.Same
	if same == "" {
		same = m.Error
	}
	k := failureKey{m.Outcome, m.Commit, same}
	prev, seen := n.failures[k]
	if seen && now.Sub(prev.at) < n.reminderEvery() {
		if prev.suppressed == 0 {
			prev.since = now
		}
		prev.suppressed++
		n.failures[k] = prev
		return ticket{}, false
	}
	if !seen && len(n.failures) >= maxRemembered {
		n.forgetOldest()
	}
	n.failures[k] = sentFailure{at: now}
	return ticket{dedupe: true, key: k, at: now, prev: prev, hadPrev: seen}, true
}

// reminder is the note appended to a failure's text when identical ones were
// held back since it was last sent; "" when none were.
func (t ticket) reminder() string {
	if !t.hadPrev || t.prev.suppressed == 0 {
		return ""
	}
	times := "time"
	if t.prev.suppressed > 1 {
		times = "times"
	}
	return fmt.Sprintf(" (reminder: the same failure happened %d more %s since %s, not sent)",
		t.prev.suppressed, times, t.prev.since.UTC().Format("2006-01-02 15:04 UTC"))
}

// takeBack undoes admit for a notification no URL accepted, unless the state
// moved on meanwhile.
func (n *Notifier) takeBack(t ticket) {
	if !t.dedupe {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur, ok := n.failures[t.key]
	if !ok || !cur.at.Equal(t.at) {
		return
	}
	if t.hadPrev { // a reminder nobody heard: it counts as held back too
		prev := t.prev
		if prev.suppressed == 0 {
			prev.since = t.at
		}
		prev.suppressed++
		n.failures[t.key] = prev
	} else {
		delete(n.failures, t.key)
	}
}

func (n *Notifier) forgetOldest() {
	var oldest failureKey
	first := true
	for k, f := range n.failures {
		if first || f.at.Before(n.failures[oldest].at) {
			oldest, first = k, false
		}
	}
	delete(n.failures, oldest)
}

func (n *Notifier) reminderEvery() time.Duration {
	if n.ReminderEvery > 0 {
		return n.ReminderEvery
	}
	return DefaultReminderEvery
}
