package idempotency

import (
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
// payload: the map slot, the entry struct and the fingerprint.
const entryOverhead = 160

// MemoryConfig bounds a MemoryStore. Zero values take the defaults.
type MemoryConfig struct {
	// MaxEntries is the most entries held, live or not yet swept
	// (DefaultMaxEntries).
	MaxEntries int
	// MaxBytes is the most bytes held: keys, stored responses and statuses,
	// plus a fixed overhead per entry (DefaultMaxBytes).
	MaxBytes int64
	// Clock tells the time for leases and TTLs (the system clock).
	Clock clock.Clock
}

// MemoryStore is a Store in the memory of one process: the default store,
// right for a single replica and for tests. It is bounded: when it holds
// MaxEntries entries or MaxBytes bytes, expired entries are swept, and if
// none has expired a new claim fails with ErrFull (the server answers
// RESOURCE_EXHAUSTED). It never evicts an entry whose lease or TTL has not
// ended, since that would let a retry run a second time.
type MemoryStore struct {
	maxEntries int
	maxBytes   int64
	clock      clock.Clock

	mu      sync.Mutex
	entries map[Key]*memEntry
	bytes   int64
	// nextExpiry is no later than the earliest expiry of any entry, so a
	// full store sweeps only when something may have expired.
	nextExpiry time.Time
	tokens     uint64
}

type memEntry struct {
	expires time.Time
	token   string // set while pending
	fp      Fingerprint
	outcome *Outcome // nil while pending
	size    int64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxEntries < 0 {
		return nil, fmt.Errorf("idempotency.MemoryConfig.MaxEntries %d: must not be negative", cfg.MaxEntries)
	}
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("idempotency.MemoryConfig.MaxBytes %d: must not be negative", cfg.MaxBytes)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	return &MemoryStore{
		maxEntries: cfg.MaxEntries,
		maxBytes:   cfg.MaxBytes,
		clock:      clock.OrSystem(cfg.Clock),
		entries:    map[Key]*memEntry{},
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
	if e, ok := s.entries[key]; ok {
		if now.Before(e.expires) {
			if e.outcome != nil {
				return Claim{State: Done, Fingerprint: e.fp, Outcome: e.outcome}, nil
			}
			return Claim{State: InFlight, Fingerprint: e.fp}, nil
		}
		s.remove(key, e)
	}
	size := keySize(key)
	if !s.fits(now, size) {
		return Claim{}, ErrFull
	}
	s.tokens++
	e := &memEntry{expires: now.Add(lease), token: strconv.FormatUint(s.tokens, 36), fp: fp, size: size}
	s.entries[key] = e
	s.bytes += size
	s.noteExpiry(e.expires)
	return Claim{State: Claimed, Token: e.token}, nil
}

// Complete implements Store. An outcome that does not fit in MaxBytes is
// not stored and ErrFull is returned; the claim then stays until its lease
// ends.
func (s *MemoryStore) Complete(_ context.Context, key Key, token string, fp Fingerprint, o *Outcome, ttl time.Duration) error {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	size := keySize(key) + int64(o.Size())
	e, ok := s.entries[key]
	switch {
	case ok && e.outcome == nil && e.token == token:
		// Still ours, whether or not the lease has run out: nobody else
		// claimed it since. Swept now, it would be gone, so it is taken out
		// of the count while room is made.
		s.remove(key, e)
		if !s.fits(now, size) {
			if now.Before(e.expires) {
				s.entries[key] = e
				s.bytes += e.size
			}
			return ErrFull
		}
	case ok && now.Before(e.expires):
		return ErrLeaseLost
	default:
		// Gone, or expired and not claimed again: nobody else is running
		// the request, so the outcome may be stored.
		if ok {
			s.remove(key, e)
		}
		if !s.fits(now, size) {
			return ErrFull
		}
	}
	e = &memEntry{expires: now.Add(ttl), fp: fp, outcome: o, size: size}
	s.entries[key] = e
	s.bytes += size
	s.noteExpiry(e.expires)
	return nil
}

// fits reports whether an entry of size bytes can be added, sweeping
// expired entries if that is needed to make room.
func (s *MemoryStore) fits(now time.Time, size int64) bool {
	if len(s.entries) < s.maxEntries && s.bytes+size <= s.maxBytes {
		return true
	}
	s.sweep(now)
	return len(s.entries) < s.maxEntries && s.bytes+size <= s.maxBytes
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key Key, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && e.outcome == nil && e.token == token {
		s.remove(key, e)
	}
	return nil
}

// Len returns the number of entries held, including expired ones not yet
// swept, and their size in bytes.
func (s *MemoryStore) Len() (entries int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries), s.bytes
}

func (s *MemoryStore) remove(key Key, e *memEntry) {
	delete(s.entries, key)
	s.bytes -= e.size
}

func (s *MemoryStore) noteExpiry(t time.Time) {
	if s.nextExpiry.IsZero() || t.Before(s.nextExpiry) {
		s.nextExpiry = t
	}
}

// sweep removes expired entries, if any may have expired. It runs only on a
// full store, so a full store of live entries answers in constant time.
func (s *MemoryStore) sweep(now time.Time) {
	if s.nextExpiry.IsZero() || now.Before(s.nextExpiry) {
		return
	}
	var next time.Time
	for k, e := range s.entries {
		if !now.Before(e.expires) {
			s.remove(k, e)
			continue
		}
		if next.IsZero() || e.expires.Before(next) {
			next = e.expires
		}
	}
	s.nextExpiry = next
}
