package idempotency

import (
	"container/heap"
	"container/list"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// Defaults of MemoryStore.
const (
	DefaultMaxEntries = 100_000
	DefaultMaxBytes   = 64 << 20
)

// entryOverhead is what an entry is charged besides its strings and
// payload: the map slot, the entry struct, the fingerprint and its places
// in the expiry heap and its identity's list.
const entryOverhead = 200

// MemoryConfig bounds a MemoryStore. Zero values take the defaults.
type MemoryConfig struct {
	// MaxEntries is the most entries held (DefaultMaxEntries).
	MaxEntries int
	// MaxBytes is the most bytes held: keys, stored responses and statuses,
	// plus a fixed overhead per entry (DefaultMaxBytes).
	MaxBytes int64
	// MaxEntriesPerIdentity and MaxBytesPerIdentity bound what one
	// identity holds (MaxEntries and MaxBytes: no bound of its own). An
	// identity at its bound makes room from its own oldest outcomes.
	MaxEntriesPerIdentity int
	MaxBytesPerIdentity   int64
	// Clock tells the time for leases and TTLs (the system clock).
	Clock clock.Clock
}

// MemoryStore is a Store in the memory of one process: the default store,
// right for a single replica and for tests. It is bounded in entries and
// bytes, in total and per identity, and degrades fairly when full:
//
//   - an identity at its own bound gives up its oldest stored outcome;
//   - a full store takes the oldest stored outcome of the identity whose
//     stored outcomes take the most bytes, so that a flood from one
//     identity costs that identity's oldest keys, not another's;
//   - a claim in flight is never evicted (that would let its request run
//     twice): only when the room is all taken by claims in flight is a new
//     claim refused with ErrFull, which lasts until a lease ends or a
//     handler finishes, not for a TTL.
//
// An evicted key loses its protection: its repeat runs again. Stats
// counts evictions, so that a flood shows. Expired entries leave by their
// expiry order, and every operation takes time logarithmic in the number
// of entries, full or not.
type MemoryStore struct {
	maxEntries, maxEntriesPerID int
	maxBytes, maxBytesPerID     int64
	clock                       clock.Clock

	mu         sync.Mutex
	entries    map[Key]*memEntry
	expiries   expiryHeap
	identities map[string]*memIdentity
	largest    identityHeap // by bytes of stored outcomes held
	bytes      int64
	tokens     uint64
	evictions  uint64
	refusals   uint64
}

type memEntry struct {
	key     Key
	expires time.Time
	token   string // set while pending
	fp      Fingerprint
	outcome *Outcome // nil while pending
	size    int64
	// ended is closed when a pending entry is completed or removed; it
	// wakes requests waiting for its outcome.
	ended chan struct{}

	heapIndex int           // in MemoryStore.expiries
	done      *list.Element // in its identity's done list, once completed
	id        *memIdentity
}

// memIdentity is what one identity holds: counts for its bounds, and its
// stored outcomes, oldest first, to evict from.
type memIdentity struct {
	name      string
	entries   int
	bytes     int64
	done      list.List // of *memEntry
	doneBytes int64     // of the entries in done
	heapIndex int       // in MemoryStore.largest
}

// MemoryStats describes what a MemoryStore holds and has given up.
type MemoryStats struct {
	// Entries and Bytes are held now, by Identities distinct identities.
	Entries    int
	Bytes      int64
	Identities int
	// Evictions counts stored outcomes removed before their TTL to make
	// room: keys whose repeats would run again.
	Evictions uint64
	// Refusals counts claims refused with ErrFull.
	Refusals uint64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxEntries", int64(cfg.MaxEntries)},
		{"MaxBytes", cfg.MaxBytes},
		{"MaxEntriesPerIdentity", int64(cfg.MaxEntriesPerIdentity)},
		{"MaxBytesPerIdentity", cfg.MaxBytesPerIdentity},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("idempotency.MemoryConfig.%s %d: must not be negative", f.name, f.v)
		}
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxEntriesPerIdentity == 0 || cfg.MaxEntriesPerIdentity > cfg.MaxEntries {
		cfg.MaxEntriesPerIdentity = cfg.MaxEntries
	}
	if cfg.MaxBytesPerIdentity == 0 || cfg.MaxBytesPerIdentity > cfg.MaxBytes {
		cfg.MaxBytesPerIdentity = cfg.MaxBytes
	}
	return &MemoryStore{
		maxEntries:      cfg.MaxEntries,
		maxBytes:        cfg.MaxBytes,
		maxEntriesPerID: cfg.MaxEntriesPerIdentity,
		maxBytesPerID:   cfg.MaxBytesPerIdentity,
		clock:           clock.OrSystem(cfg.Clock),
		entries:         map[Key]*memEntry{},
		identities:      map[string]*memIdentity{},
	}, nil
}

func keySize(k Key) int64 {
	return int64(len(k.Identity)+len(k.Method)+len(k.Key)) + entryOverhead
}

// Claim implements Store.
func (s *MemoryStore) Claim(_ context.Context, key Key, fp Fingerprint, lease time.Duration) (Claim, error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if e, ok := s.entries[key]; ok {
		if e.outcome != nil {
			return Claim{State: Done, Fingerprint: e.fp, Outcome: e.outcome}, nil
		}
		return Claim{State: InFlight, Fingerprint: e.fp}, nil
	}
	size := keySize(key)
	if !s.makeRoom(key.Identity, size) {
		s.refusals++
		return Claim{}, ErrFull
	}
	s.tokens++
	e := &memEntry{key: key, expires: now.Add(lease), token: strconv.FormatUint(s.tokens, 36), fp: fp, size: size, ended: make(chan struct{})}
	s.add(e)
	return Claim{State: Claimed, Token: e.token}, nil
}

// Complete implements Store. An outcome for which no room can be made is
// not stored and ErrFull is returned; the claim then stays until its lease
// ends.
func (s *MemoryStore) Complete(_ context.Context, key Key, token string, fp Fingerprint, o *Outcome, ttl time.Duration) error {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	e, ok := s.entries[key]
	if ok && (e.outcome != nil || e.token != token) {
		return ErrLeaseLost
	}
	// Ours, or gone (expired and not claimed again, so nobody else is
	// running the request): the outcome may be stored.
	var ended chan struct{}
	if ok {
		// Taken out while room is made, so that it is not evicted for
		// itself, and put back if there is no room.
		s.remove(e)
		ended = e.ended
	}
	size := keySize(key) + int64(o.Size())
	if !s.makeRoom(key.Identity, size) {
		if ok {
			s.add(e)
		}
		return ErrFull
	}
	s.add(&memEntry{key: key, expires: now.Add(ttl), fp: fp, outcome: o, size: size})
	if ended != nil {
		close(ended)
	}
	return nil
}

// Extend implements Store.
func (s *MemoryStore) Extend(_ context.Context, key Key, token string, lease time.Duration) error {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	e, ok := s.entries[key]
	if !ok || e.outcome != nil || e.token != token {
		return ErrLeaseLost
	}
	e.expires = now.Add(lease)
	heap.Fix(&s.expiries, e.heapIndex)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key Key, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && e.outcome == nil && e.token == token {
		s.remove(e)
		close(e.ended)
	}
	return nil
}

// Wait implements Waiter: it returns when the claim in flight on key ends
// (completed, released or its lease over) or ctx is done.
func (s *MemoryStore) Wait(ctx context.Context, key Key) error {
	now := s.clock.Now()
	s.mu.Lock()
	s.expire(now)
	e, ok := s.entries[key]
	if !ok || e.outcome != nil {
		s.mu.Unlock()
		return nil
	}
	ended, left := e.ended, e.expires.Sub(now)
	s.mu.Unlock()
	// An extended lease wakes the waiter, which finds the claim still in
	// flight and waits again.
	t := s.clock.NewTimer(left)
	defer t.Stop()
	select {
	case <-ended:
		return nil
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Len returns the number of entries held and their size in bytes.
func (s *MemoryStore) Len() (entries int, bytes int64) {
	st := s.Stats()
	return st.Entries, st.Bytes
}

// Stats returns what the store holds and has given up.
func (s *MemoryStore) Stats() MemoryStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return MemoryStats{
		Entries: len(s.entries), Bytes: s.bytes, Identities: len(s.identities),
		Evictions: s.evictions, Refusals: s.refusals,
	}
}

// makeRoom evicts stored outcomes until an entry of size bytes for
// identity fits: first the identity's own oldest, while it is over its
// bounds, then the oldest of the identity whose outcomes take the most
// bytes, while the store is full. It reports false, evicting nothing more, when
// what is in the way is all claims in flight.
func (s *MemoryStore) makeRoom(identity string, size int64) bool {
	if size > s.maxBytesPerID {
		return false
	}
	if id := s.identities[identity]; id != nil {
		for id.entries+1 > s.maxEntriesPerID || id.bytes+size > s.maxBytesPerID {
			if !s.evictOldest(id) {
				return false
			}
		}
	}
	for len(s.entries)+1 > s.maxEntries || s.bytes+size > s.maxBytes {
		if len(s.largest) == 0 || !s.evictOldest(s.largest[0]) {
			return false
		}
	}
	return true
}

func (s *MemoryStore) evictOldest(id *memIdentity) bool {
	front := id.done.Front()
	if front == nil {
		return false
	}
	s.remove(front.Value.(*memEntry))
	s.evictions++
	return true
}

// expire removes the entries whose lease or TTL has ended, earliest first.
func (s *MemoryStore) expire(now time.Time) {
	for len(s.expiries) > 0 && !now.Before(s.expiries[0].expires) {
		e := s.expiries[0]
		s.remove(e)
		if e.outcome == nil {
			close(e.ended)
		}
	}
}

func (s *MemoryStore) add(e *memEntry) {
	id := s.identities[e.key.Identity]
	if id == nil {
		id = &memIdentity{name: e.key.Identity}
		s.identities[id.name] = id
		heap.Push(&s.largest, id)
	}
	e.id = id
	s.entries[e.key] = e
	heap.Push(&s.expiries, e)
	if e.outcome != nil {
		e.done = id.done.PushBack(e)
		id.doneBytes += e.size
	}
	s.bytes += e.size
	id.entries++
	id.bytes += e.size
	heap.Fix(&s.largest, id.heapIndex)
}

func (s *MemoryStore) remove(e *memEntry) {
	id := e.id
	delete(s.entries, e.key)
	heap.Remove(&s.expiries, e.heapIndex)
	if e.done != nil {
		id.done.Remove(e.done)
		id.doneBytes -= e.size
		e.done = nil
	}
	s.bytes -= e.size
	id.entries--
	id.bytes -= e.size
	if id.entries == 0 {
		heap.Remove(&s.largest, id.heapIndex)
		delete(s.identities, id.name)
		return
	}
	heap.Fix(&s.largest, id.heapIndex)
}

// expiryHeap orders entries by expiry, earliest first.
type expiryHeap []*memEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *expiryHeap) Push(x any) { e := x.(*memEntry); e.heapIndex = len(*h); *h = append(*h, e) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// identityHeap orders identities by the bytes their stored outcomes take,
// most first.
type identityHeap []*memIdentity

func (h identityHeap) Len() int           { return len(h) }
func (h identityHeap) Less(i, j int) bool { return h[i].doneBytes > h[j].doneBytes }
func (h identityHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *identityHeap) Push(x any) {
	id := x.(*memIdentity)
	id.heapIndex = len(*h)
	*h = append(*h, id)
}
func (h *identityHeap) Pop() any {
	old := *h
	id := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return id
}
