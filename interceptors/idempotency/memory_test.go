package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/idempotency/internal/storetest"
)

func newMemory(t *testing.T, cfg idempotency.MemoryConfig) (*idempotency.MemoryStore, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Unix(1e9, 0))
	cfg.Clock = clk
	st, err := idempotency.NewMemoryStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st, clk
}

func mkey(k string) idempotency.Key {
	return idempotency.Key{Identity: "id", Method: "/s.S/M", Key: k}
}

func mustClaim(t *testing.T, st idempotency.Store, k string, want idempotency.State) idempotency.Claim {
	t.Helper()
	c, err := st.Claim(context.Background(), mkey(k), idempotency.Fingerprint{1}, time.Minute)
	if err != nil || c.State != want {
		t.Fatalf("Claim(%s) = %v, %v; want %v", k, c.State, err, want)
	}
	return c
}

func TestMemoryLifecycle(t *testing.T) {
	st, clk := newMemory(t, idempotency.MemoryConfig{})
	ctx := context.Background()
	c := mustClaim(t, st, "a", idempotency.Claimed)
	if got := mustClaim(t, st, "a", idempotency.InFlight); got.Fingerprint != (idempotency.Fingerprint{1}) {
		t.Errorf("in-flight fingerprint %v", got.Fingerprint)
	}
	o := &idempotency.Outcome{ResponseType: "t", Response: []byte("r")}
	if err := st.Complete(ctx, mkey("a"), "not-the-token", idempotency.Fingerprint{1}, o, time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Errorf("Complete with another token: %v", err)
	}
	if err := st.Complete(ctx, mkey("a"), c.Token, idempotency.Fingerprint{1}, o, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := mustClaim(t, st, "a", idempotency.Done); got.Outcome != o {
		t.Errorf("outcome %v, want %v", got.Outcome, o)
	}
	// Release of a completed key does nothing.
	_ = st.Release(ctx, mkey("a"), c.Token)
	mustClaim(t, st, "a", idempotency.Done)
	clk.Advance(time.Hour)
	mustClaim(t, st, "a", idempotency.Claimed) // TTL over

	// Release gives the key back; a stale token does not.
	c = mustClaim(t, st, "b", idempotency.Claimed)
	_ = st.Release(ctx, mkey("b"), "stale")
	mustClaim(t, st, "b", idempotency.InFlight)
	_ = st.Release(ctx, mkey("b"), c.Token)
	mustClaim(t, st, "b", idempotency.Claimed)

	// A claim whose lease ran out, not claimed again, may still complete.
	c = mustClaim(t, st, "c", idempotency.Claimed)
	clk.Advance(2 * time.Minute)
	if err := st.Complete(ctx, mkey("c"), c.Token, idempotency.Fingerprint{1}, o, time.Hour); err != nil {
		t.Errorf("late Complete, key not reclaimed: %v", err)
	}
	mustClaim(t, st, "c", idempotency.Done)
}

func TestMemoryBounds(t *testing.T) {
	st, clk := newMemory(t, idempotency.MemoryConfig{MaxEntries: 2})
	ctx := context.Background()
	mustClaim(t, st, "a", idempotency.Claimed)
	clk.Advance(30 * time.Second)
	mustClaim(t, st, "b", idempotency.Claimed)
	if _, err := st.Claim(ctx, mkey("c"), idempotency.Fingerprint{}, time.Minute); !errors.Is(err, idempotency.ErrFull) {
		t.Fatalf("third claim: %v, want ErrFull", err)
	}
	// Live keys survive the refusal.
	mustClaim(t, st, "a", idempotency.InFlight)
	mustClaim(t, st, "b", idempotency.InFlight)
	// Once a's lease is over, it is swept to make room; b is kept.
	clk.Advance(30 * time.Second)
	mustClaim(t, st, "c", idempotency.Claimed)
	mustClaim(t, st, "b", idempotency.InFlight)
	if n, _ := st.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
}

func TestMemoryByteBound(t *testing.T) {
	// Room for two bare claims (200 bytes of overhead each plus the 9 of
	// the key), but not for a claim and a 200-byte outcome.
	st, _ := newMemory(t, idempotency.MemoryConfig{MaxBytes: 450})
	ctx := context.Background()
	a := mustClaim(t, st, "a", idempotency.Claimed)
	b := mustClaim(t, st, "b", idempotency.Claimed)
	if _, err := st.Claim(ctx, mkey("c"), idempotency.Fingerprint{}, time.Minute); !errors.Is(err, idempotency.ErrFull) {
		t.Fatalf("third claim: %v, want ErrFull", err)
	}
	big := &idempotency.Outcome{Response: make([]byte, 200)}
	if err := st.Complete(ctx, mkey("a"), a.Token, idempotency.Fingerprint{1}, big, time.Hour); !errors.Is(err, idempotency.ErrFull) {
		t.Fatalf("outcome too big: %v, want ErrFull", err)
	}
	// The claim stays, so a retry is answered in flight, not run again.
	mustClaim(t, st, "a", idempotency.InFlight)
	_ = st.Release(ctx, mkey("b"), b.Token)
	if err := st.Complete(ctx, mkey("a"), a.Token, idempotency.Fingerprint{1}, big, time.Hour); err != nil {
		t.Fatalf("outcome after room was made: %v", err)
	}
	if _, bytes := st.Len(); bytes > 450 {
		t.Errorf("%d bytes held, bound 450", bytes)
	}
}

func TestMemoryFullServesReplays(t *testing.T) {
	// A full store still answers keys it holds.
	st, _ := newMemory(t, idempotency.MemoryConfig{MaxEntries: 1})
	c := mustClaim(t, st, "a", idempotency.Claimed)
	if err := st.Complete(context.Background(), mkey("a"), c.Token, idempotency.Fingerprint{1}, &idempotency.Outcome{}, time.Hour); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, st, "a", idempotency.Done)
}

func complete(t *testing.T, st idempotency.Store, k idempotency.Key) {
	t.Helper()
	ctx := context.Background()
	c, err := st.Claim(ctx, k, idempotency.Fingerprint{1}, time.Minute)
	if err != nil || c.State != idempotency.Claimed {
		t.Fatalf("Claim(%v) = %v, %v", k, c.State, err)
	}
	if err := st.Complete(ctx, k, c.Token, idempotency.Fingerprint{1}, &idempotency.Outcome{}, time.Hour); err != nil {
		t.Fatalf("Complete(%v): %v", k, err)
	}
}

func state(t *testing.T, st idempotency.Store, k idempotency.Key) idempotency.State {
	t.Helper()
	c, err := st.Claim(context.Background(), k, idempotency.Fingerprint{1}, time.Minute)
	if err != nil {
		return 0
	}
	if c.State == idempotency.Claimed {
		_ = st.Release(context.Background(), k, c.Token)
	}
	return c.State
}

// A flood of keys from one identity costs that identity's oldest keys: the
// other identity's stored outcomes stay, and its new keys are claimed.
func TestMemoryFloodCostsTheFlooder(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  idempotency.MemoryConfig
	}{
		{"store bound only", idempotency.MemoryConfig{MaxEntries: 100}},
		{"per-identity bound", idempotency.MemoryConfig{MaxEntries: 100, MaxEntriesPerIdentity: 20}},
		{"byte bound", idempotency.MemoryConfig{MaxBytes: 100 * 230}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := newMemory(t, tc.cfg)
			victim := func(i int) idempotency.Key {
				return idempotency.Key{Identity: "victim", Method: "/s.S/M", Key: fmt.Sprint("v", i)}
			}
			for i := range 10 {
				complete(t, st, victim(i))
			}
			for i := range 1000 {
				complete(t, st, idempotency.Key{Identity: "flooder", Method: "/s.S/M", Key: fmt.Sprint("f", i)})
			}
			for i := range 10 {
				if got := state(t, st, victim(i)); got != idempotency.Done {
					t.Fatalf("victim's key %d after the flood: %v, want done", i, got)
				}
			}
			complete(t, st, victim(10))
			if s := st.Stats(); s.Evictions < 900 || s.Refusals != 0 || s.Identities != 2 {
				t.Errorf("stats %+v, want the flooder's evictions and no refusal", s)
			}
			// The flooder keeps its newest keys.
			if got := state(t, st, idempotency.Key{Identity: "flooder", Method: "/s.S/M", Key: "f999"}); got != idempotency.Done {
				t.Errorf("flooder's newest key: %v, want done", got)
			}
		})
	}
}

// Claims in flight are never evicted: an identity whose bound is all
// claims in flight is refused until one ends, and others are not.
func TestMemoryInFlightBound(t *testing.T) {
	st, clk := newMemory(t, idempotency.MemoryConfig{MaxEntries: 10, MaxEntriesPerIdentity: 3})
	ctx := context.Background()
	key := func(id string, i int) idempotency.Key {
		return idempotency.Key{Identity: id, Method: "/s.S/M", Key: fmt.Sprint(i)}
	}
	for i := range 3 {
		if _, err := st.Claim(ctx, key("a", i), idempotency.Fingerprint{}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Claim(ctx, key("a", 3), idempotency.Fingerprint{}, time.Minute); !errors.Is(err, idempotency.ErrFull) {
		t.Fatalf("fourth claim in flight: %v, want ErrFull", err)
	}
	complete(t, st, key("b", 0))
	clk.Advance(time.Minute)
	if _, err := st.Claim(ctx, key("a", 3), idempotency.Fingerprint{}, time.Minute); err != nil {
		t.Fatalf("after the leases ended: %v", err)
	}
	if s := st.Stats(); s.Refusals != 1 || s.Evictions != 0 {
		t.Errorf("stats %+v, want one refusal and no eviction", s)
	}
}

// Extend keeps a running claim alive past its first lease.
func TestMemoryExtend(t *testing.T) {
	st, clk := newMemory(t, idempotency.MemoryConfig{})
	ctx := context.Background()
	c := mustClaim(t, st, "a", idempotency.Claimed)
	clk.Advance(50 * time.Second)
	if err := st.Extend(ctx, mkey("a"), c.Token, time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Second)
	mustClaim(t, st, "a", idempotency.InFlight)
	if err := st.Extend(ctx, mkey("a"), "other", time.Minute); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Errorf("Extend with another token: %v, want ErrLeaseLost", err)
	}
	clk.Advance(time.Minute)
	if err := st.Extend(ctx, mkey("a"), c.Token, time.Minute); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Errorf("Extend after the lease ended: %v, want ErrLeaseLost", err)
	}
}

func TestMemoryBoundedContract(t *testing.T) {
	st, _ := newMemory(t, idempotency.MemoryConfig{MaxEntriesPerIdentity: 3})
	storetest.RunBounded(t, st)
}

func TestMemoryContract(t *testing.T) {
	st, clk := newMemory(t, idempotency.MemoryConfig{})
	// Advancing the clock past every lease and TTL expires every entry,
	// which the contract allows: expire only promises k's end.
	storetest.Run(t, st, func(*testing.T, idempotency.Key) { clk.Advance(25 * time.Hour) })
}

// A full store makes room from the identity whose stored outcomes take the
// most room, even when another identity holds more claims in flight.
func TestMemoryFullEvictsOutcomesNotClaims(t *testing.T) {
	st, _ := newMemory(t, idempotency.MemoryConfig{MaxEntries: 6})
	key := func(id string, i int) idempotency.Key {
		return idempotency.Key{Identity: id, Method: "/s.S/M", Key: fmt.Sprint(i)}
	}
	for i := range 4 {
		if _, err := st.Claim(context.Background(), key("busy", i), idempotency.Fingerprint{}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	complete(t, st, key("done", 0))
	complete(t, st, key("done", 1))
	complete(t, st, key("new", 0))
	if got := state(t, st, key("done", 0)); got != idempotency.Claimed {
		t.Errorf("oldest outcome: %v, want evicted (claimed anew)", got)
	}
	for i := range 4 {
		if got := state(t, st, key("busy", i)); got != idempotency.InFlight {
			t.Errorf("claim %d: %v, want still in flight", i, got)
		}
	}
}
