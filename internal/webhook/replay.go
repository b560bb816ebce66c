package webhook

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// DefaultReplaySize is the number of delivery ids NewReplay remembers when
// given n < 1.
const DefaultReplaySize = 1024

// Replay remembers the most recent delivery ids, so that a delivery seen
// twice is answered once. It holds at most n ids and forgets the least
// recently seen first. Ids are kept as SHA-256 digests, so a sender cannot
// make it hold more than a few hundred bytes per id. It is safe for
// concurrent use; the zero value remembers DefaultReplaySize ids.
type Replay struct {
	mu    sync.Mutex
	n     int
	order *list.List // of [sha256.Size]byte, most recent first
	ids   map[[sha256.Size]byte]*list.Element
}

// NewReplay returns a Replay that remembers the last n delivery ids
// (DefaultReplaySize when n < 1).
func NewReplay(n int) *Replay {
	if n < 1 {
		n = DefaultReplaySize
	}
	return &Replay{n: n, order: list.New(), ids: make(map[[sha256.Size]byte]*list.Element)}
}

// Seen reports whether id was seen before, and remembers it if not. The
// empty id, and any id on a nil Replay, is never seen.
func (r *Replay) Seen(id string) bool {
	if r == nil || id == "" {
		return false
	}
	key := sha256.Sum256([]byte(id))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		if r.n < 1 {
			r.n = DefaultReplaySize
		}
		r.order, r.ids = list.New(), make(map[[sha256.Size]byte]*list.Element)
	}
	if el, ok := r.ids[key]; ok {
		r.order.MoveToFront(el)
		return true
	}
	r.ids[key] = r.order.PushFront(key)
	if r.order.Len() > r.n {
		oldest := r.order.Back()
		r.order.Remove(oldest)
		delete(r.ids, oldest.Value.([sha256.Size]byte))
	}
	return false
}
