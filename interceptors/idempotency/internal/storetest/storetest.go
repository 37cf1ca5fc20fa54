package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/idempotency"
)

// Run checks st. expire must end the lease or TTL of the entry of k, as if
// its time had passed.
func Run(t *testing.T, st idempotency.Store, expire func(t *testing.T, k idempotency.Key)) {
	ctx := context.Background()
	fp1, fp2 := idempotency.Fingerprint{1}, idempotency.Fingerprint{2}
	claim := func(t *testing.T, k idempotency.Key, fp idempotency.Fingerprint, want idempotency.State) idempotency.Claim {
		t.Helper()
		c, err := st.Claim(ctx, k, fp, time.Minute)
		if err != nil || c.State != want {
			t.Fatalf("Claim(%v) = %v, %v; want %v", k, c.State, err, want)
		}
		if want == idempotency.Claimed && c.Token == "" {
			t.Fatal("Claimed without a token")
		}
		return c
	}
	key := func(name string) idempotency.Key {
		return idempotency.Key{Identity: "caller-" + t.Name(), Method: "/s.v1.S/M", Key: name}
	}

	t.Run("claim complete replay", func(t *testing.T) {
		k := key("a")
		c := claim(t, k, fp1, idempotency.Claimed)
		if got := claim(t, k, fp2, idempotency.InFlight); got.Fingerprint != fp1 {
			t.Errorf("in-flight fingerprint %v, want the first request's", got.Fingerprint)
		}
		o := &idempotency.Outcome{Code: codes.OK, ResponseType: "s.v1.Resp", Response: []byte{8, 1}}
		if err := st.Complete(ctx, k, "other", fp1, o, time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Errorf("Complete with another token: %v, want ErrLeaseLost", err)
		}
		if err := st.Complete(ctx, k, c.Token, fp1, o, time.Hour); err != nil {
			t.Fatal(err)
		}
		got := claim(t, k, fp2, idempotency.Done)
		if got.Fingerprint != fp1 || !sameOutcome(got.Outcome, o) {
			t.Errorf("Done with %v, %+v; want %v, %+v", got.Fingerprint, got.Outcome, fp1, o)
		}
		if err := st.Release(ctx, k, c.Token); err != nil {
			t.Fatal(err)
		}
		claim(t, k, fp1, idempotency.Done)
	})

	t.Run("outcomes", func(t *testing.T) {
		for i, o := range []*idempotency.Outcome{
			{Code: codes.OK, ResponseType: "s.v1.Empty"},
			{Code: codes.FailedPrecondition, Status: []byte("\x08\x09\x12\x08declined")},
			{Code: codes.OK, ResponseType: "s.v1.Big", Response: bytes.Repeat([]byte{0xff, 0}, 40_000)},
			{Code: codes.OK, ResponseType: "s.v1.R", Response: []byte{8, 1}, Header: []byte("h\x00"), Trailer: []byte{0, 1, 2}},
		} {
			k := key(string(rune('p' + i)))
			c := claim(t, k, fp1, idempotency.Claimed)
			if err := st.Complete(ctx, k, c.Token, fp1, o, time.Hour); err != nil {
				t.Fatal(err)
			}
			if got := claim(t, k, fp1, idempotency.Done); !sameOutcome(got.Outcome, o) {
				t.Errorf("outcome %d: got %+v, want %+v", i, got.Outcome, o)
			}
		}
	})

	t.Run("release", func(t *testing.T) {
		k := key("b")
		c := claim(t, k, fp1, idempotency.Claimed)
		if err := st.Release(ctx, k, "stale"); err != nil {
			t.Fatal(err)
		}
		claim(t, k, fp1, idempotency.InFlight)
		if err := st.Release(ctx, k, c.Token); err != nil {
			t.Fatal(err)
		}
		claim(t, k, fp2, idempotency.Claimed)
	})

	t.Run("lease expiry", func(t *testing.T) {
		k := key("c")
		old := claim(t, k, fp1, idempotency.Claimed)
		expire(t, k)
		c := claim(t, k, fp1, idempotency.Claimed)
		o := &idempotency.Outcome{Code: codes.NotFound, Status: []byte{8, 5}}
		if err := st.Complete(ctx, k, old.Token, fp1, o, time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Errorf("crashed claim completing: %v, want ErrLeaseLost", err)
		}
		if err := st.Release(ctx, k, old.Token); err != nil {
			t.Fatal(err)
		}
		claim(t, k, fp1, idempotency.InFlight)
		if err := st.Complete(ctx, k, c.Token, fp1, o, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := st.Complete(ctx, k, old.Token, fp1, &idempotency.Outcome{}, time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Errorf("crashed claim completing over an outcome: %v, want ErrLeaseLost", err)
		}
		claim(t, k, fp1, idempotency.Done)
	})

	t.Run("late completion", func(t *testing.T) {
		// The lease ran out but nobody claimed the key again: the outcome
		// is still worth keeping.
		k := key("d")
		c := claim(t, k, fp1, idempotency.Claimed)
		expire(t, k)
		if err := st.Complete(ctx, k, c.Token, fp1, &idempotency.Outcome{Code: codes.OK, ResponseType: "x"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		claim(t, k, fp1, idempotency.Done)
	})

	t.Run("ttl expiry", func(t *testing.T) {
		k := key("e")
		c := claim(t, k, fp1, idempotency.Claimed)
		if err := st.Complete(ctx, k, c.Token, fp1, &idempotency.Outcome{Code: codes.OK, ResponseType: "x"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		expire(t, k)
		claim(t, k, fp2, idempotency.Claimed)
	})

	t.Run("key parts are distinct", func(t *testing.T) {
		keys := []idempotency.Key{
			{Identity: "ab", Method: "/s.v1.S/M", Key: "c"},
			{Identity: "a", Method: "/s.v1.S/M", Key: "bc"},
			{Identity: "ab", Method: "/s.v1.S/N", Key: "c"},
			{Identity: "", Method: "/s.v1.S/M", Key: "abc"},
		}
		for _, k := range keys {
			k.Identity += t.Name()
			claim(t, k, fp1, idempotency.Claimed)
		}
	})

	t.Run("one concurrent claim wins", func(t *testing.T) {
		k := key("f")
		var wg sync.WaitGroup
		var mu sync.Mutex
		states := map[idempotency.State]int{}
		for range 32 {
			wg.Go(func() {
				c, err := st.Claim(ctx, k, fp1, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				states[c.State]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if states[idempotency.Claimed] != 1 || states[idempotency.InFlight] != 31 {
			t.Errorf("states %v, want one claim and 31 in flight", states)
		}
	})
}

func sameOutcome(a, b *idempotency.Outcome) bool {
	return a != nil && b != nil && a.Code == b.Code && a.ResponseType == b.ResponseType &&
		bytes.Equal(a.Status, b.Status) && bytes.Equal(a.Response, b.Response)
}

// RunBounded checks a store that holds at most 3 entries per identity: an
// identity at its bound gives up one of its own stored outcomes for a new
// claim, never another identity's and never a claim in flight, and is
// refused with ErrFull when its bound is all claims in flight.
func RunBounded(t *testing.T, st idempotency.Store) {
	ctx := context.Background()
	fp := idempotency.Fingerprint{1}
	key := func(id string, i int) idempotency.Key {
		return idempotency.Key{Identity: id + t.Name(), Method: "/s.v1.S/M", Key: string(rune('a' + i))}
	}
	claim := func(k idempotency.Key) (idempotency.Claim, error) { return st.Claim(ctx, k, fp, time.Minute) }
	done := func(k idempotency.Key) {
		t.Helper()
		c, err := claim(k)
		if err != nil || c.State != idempotency.Claimed {
			t.Fatalf("Claim(%v) = %v, %v; want claimed", k, c.State, err)
		}
		if err := st.Complete(ctx, k, c.Token, fp, &idempotency.Outcome{ResponseType: "x"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// stored counts the keys with a stored outcome, giving back the
	// claims the counting makes.
	stored := func(keys ...idempotency.Key) int {
		t.Helper()
		n := 0
		for _, k := range keys {
			c, err := claim(k)
			if err != nil {
				t.Fatal(err)
			}
			switch c.State {
			case idempotency.Done:
				n++
			case idempotency.Claimed:
				_ = st.Release(ctx, k, c.Token)
			}
		}
		return n
	}
	done(key("victim", 0))
	for i := range 10 {
		done(key("flooder", i))
	}
	if n := stored(key("victim", 0)); n != 1 {
		t.Errorf("the victim's outcome was evicted by another identity's flood")
	}
	if n := stored(key("flooder", 9), key("flooder", 8)); n != 2 {
		t.Errorf("the flooder's newest outcomes: %d stored, want 2", n)
	}

	// A bound of claims in flight refuses the identity, not others.
	for i := range 3 {
		if c, err := claim(key("busy", i)); err != nil || c.State != idempotency.Claimed {
			t.Fatalf("claim %d: %v, %v", i, c.State, err)
		}
	}
	if _, err := claim(key("busy", 3)); !errors.Is(err, idempotency.ErrFull) {
		t.Errorf("claim over a bound of claims in flight: %v, want ErrFull", err)
	}
	for i := range 3 {
		if c, err := claim(key("busy", i)); err != nil || c.State != idempotency.InFlight {
			t.Errorf("claim %d after the refusal: %v, %v; want still in flight", i, c.State, err)
		}
	}
	done(key("victim", 1))
}
