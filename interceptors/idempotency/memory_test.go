package idempotency_test

import (
	"context"
	"errors"
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
	// Room for two bare claims (160 bytes of overhead each plus the key),
	// but not for a claim and a 200-byte outcome.
	st, _ := newMemory(t, idempotency.MemoryConfig{MaxBytes: 400})
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
	if _, bytes := st.Len(); bytes > 400 {
		t.Errorf("%d bytes held, bound 400", bytes)
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

func TestMemoryContract(t *testing.T) {
	st, clk := newMemory(t, idempotency.MemoryConfig{})
	// Advancing the clock past every lease and TTL expires every entry,
	// which the contract allows: expire only promises k's end.
	storetest.Run(t, st, func(*testing.T, idempotency.Key) { clk.Advance(25 * time.Hour) })
}
