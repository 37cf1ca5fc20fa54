package pending

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemoryStore is a Store in memory, for tests and for programs that accept
// losing their pending calls when they exit. Create it with NewMemoryStore.
type MemoryStore struct {
	max int

	mu      sync.Mutex
	waiting map[string]Entry
	dead    map[string]Dead
}

// NewMemoryStore returns an empty store that holds at most max waiting
// entries.
func NewMemoryStore(max int) (*MemoryStore, error) {
	if max < 1 {
		return nil, fmt.Errorf("pending.NewMemoryStore(%d): want a positive maximum", max)
	}
	return &MemoryStore{max: max, waiting: map[string]Entry{}, dead: map[string]Dead{}}, nil
}

// Add implements Store.
func (s *MemoryStore) Add(_ context.Context, e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.dead[e.Key]; ok {
		return fmt.Errorf("%w: %q", ErrDead, e.Key)
	}
	if _, ok := s.waiting[e.Key]; ok {
		return nil
	}
	if len(s.waiting) >= s.max {
		return FullError(s.max)
	}
	s.waiting[e.Key] = clone(e)
	return nil
}

// clone copies e's slices and maps, so the store shares nothing with its
// callers.
func clone(e Entry) Entry {
	e.Request = slices.Clone(e.Request)
	if e.Metadata != nil {
		md := make(map[string][]string, len(e.Metadata))
		for k, v := range e.Metadata {
			md[k] = slices.Clone(v)
		}
		e.Metadata = md
	}
	if e.Trace != nil {
		tc := make(map[string]string, len(e.Trace))
		for k, v := range e.Trace {
			tc[k] = v
		}
		e.Trace = tc
	}
	return e
}

// Claim implements Store.
func (s *MemoryStore) Claim(_ context.Context, now time.Time, lease time.Duration, max int) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []Entry
	for _, e := range s.waiting {
		if !e.NotBefore.After(now) {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b Entry) int {
		if c := a.NotBefore.Compare(b.NotBefore); c != 0 {
			return c
		}
		return a.Enqueued.Compare(b.Enqueued)
	})
	if len(due) > max {
		due = due[:max]
	}
	for i, e := range due {
		e.NotBefore = now.Add(lease)
		s.waiting[e.Key] = e
		due[i] = clone(e)
	}
	return due, nil
}

// Reschedule implements Store.
func (s *MemoryStore) Reschedule(_ context.Context, e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.waiting[e.Key]
	if !ok {
		return nil
	}
	old.Attempts, old.NotBefore, old.LastError = e.Attempts, e.NotBefore, e.LastError
	s.waiting[e.Key] = old
	return nil
}

// Settle implements Store.
func (s *MemoryStore) Settle(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, key)
	return nil
}

// Bury implements Store.
func (s *MemoryStore) Bury(_ context.Context, d Dead) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, d.Key)
	d.Entry = clone(d.Entry)
	s.dead[d.Key] = d
	return nil
}

// DeadLetters implements Store.
func (s *MemoryStore) DeadLetters(_ context.Context, max int) ([]Dead, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Dead, 0, len(s.dead))
	for _, d := range s.dead {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Dead) int {
		if c := a.Died.Compare(b.Died); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// Forget implements Store.
func (s *MemoryStore) Forget(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dead, key)
	return nil
}

// Stats implements Store.
func (s *MemoryStore) Stats(context.Context) (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Depth: len(s.waiting), Dead: len(s.dead)}
	for _, e := range s.waiting {
		if st.Oldest.IsZero() || e.Enqueued.Before(st.Oldest) {
			st.Oldest = e.Enqueued
		}
	}
	return st, nil
}
