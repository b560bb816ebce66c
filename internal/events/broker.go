// Package events fans the engine's step events out to the agent's
// subscribers (the SSE feed, the CLI streaming a deploy) and keeps the
// recent ones for late readers.
package events

import (
	"sync"

	"github.com/slipway-dev/slipway/internal/deploy"
)

// Broker is safe for concurrent use.
type Broker struct {
	mu     sync.Mutex
	subs   map[*Sub]struct{}
	recent []deploy.Event
	keep   int
}

// Sub is one subscription. C is closed when the subscriber falls too far
// behind (it then knows it missed events) or unsubscribes.
type Sub struct {
	C    chan deploy.Event
	once sync.Once
}

// New returns a broker that remembers the last keep events.
func New(keep int) *Broker {
	return &Broker{subs: map[*Sub]struct{}{}, keep: keep}
}

// Publish sends ev to every subscriber without blocking.
func (b *Broker) Publish(ev deploy.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recent = append(b.recent, ev)
	if len(b.recent) > b.keep {
		b.recent = append(b.recent[:0], b.recent[len(b.recent)-b.keep:]...)
	}
	for s := range b.subs {
		select {
		case s.C <- ev:
		default:
			// A subscriber this far behind is cut off rather than slowing a deploy.
			delete(b.subs, s)
			s.close()
		}
	}
}

// Subscribe returns a subscription with room for buf events.
func (b *Broker) Subscribe(buf int) *Sub {
	s := &Sub{C: make(chan deploy.Event, buf)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Unsubscribe ends s.
func (b *Broker) Unsubscribe(s *Sub) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
	s.close()
}

func (s *Sub) close() { s.once.Do(func() { close(s.C) }) }

// Recent returns the remembered events, oldest first.
func (b *Broker) Recent() []deploy.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]deploy.Event(nil), b.recent...)
}
