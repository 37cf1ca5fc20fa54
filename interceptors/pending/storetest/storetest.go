package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/pending"
)

// NewStore returns an empty store that holds at most max waiting entries.
// The store is closed by the caller's t.Cleanup.
type NewStore func(t *testing.T, max int) pending.Store

// base is the contract's time origin, whole seconds so that every store
// keeps it exactly.
var base = time.Unix(1_800_000_000, 0)

func at(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

func entry(key string, enq int) pending.Entry {
	return pending.Entry{
		Key: key, Method: "/test.v1.Pay/Charge", Request: []byte{0x0a, 0x03, 'a', 0, 'b'},
		Enqueued: at(enq), NotBefore: at(enq),
	}
}

// Run runs the contract against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t, 10)
		e := entry("k1", 0)
		e.Metadata = map[string][]string{"tenant": {"a", "b"}}
		e.Trace = map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
		e.Attempts, e.LastError = 2, "unavailable"
		mustAdd(t, s, e)
		got := claim(t, s, at(0), time.Minute, 10)
		if len(got) != 1 {
			t.Fatalf("Claim = %d entries, want 1", len(got))
		}
		e.NotBefore = at(60)
		if err := same(got[0], e); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ClaimIsALease", func(t *testing.T) {
		s := newStore(t, 10)
		for i, k := range []string{"a", "b", "c"} {
			mustAdd(t, s, entry(k, i))
		}
		if got := keys(claim(t, s, at(1), 10*time.Second, 10)); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("Claim at 1s = %v, want the due entries a, b in order", got)
		}
		if got := keys(claim(t, s, at(5), 10*time.Second, 10)); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("Claim at 5s = %v, want only c: a and b are leased", got)
		}
		if got := keys(claim(t, s, at(11), 10*time.Second, 1)); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("Claim of 1 after the lease = %v, want a", got)
		}
	})
	t.Run("DuplicateKeyKeepsFirst", func(t *testing.T) {
		s := newStore(t, 10)
		mustAdd(t, s, entry("k", 0))
		second := entry("k", 5)
		second.Request = []byte("other")
		mustAdd(t, s, second)
		got := claim(t, s, at(10), time.Second, 10)
		if len(got) != 1 || !got[0].Enqueued.Equal(at(0)) || string(got[0].Request) == "other" {
			t.Fatalf("after adding k twice: %+v, want the first entry only", got)
		}
	})
	t.Run("Full", func(t *testing.T) {
		s := newStore(t, 2)
		mustAdd(t, s, entry("a", 0))
		mustAdd(t, s, entry("b", 0))
		if err := s.Add(ctx, entry("c", 0)); !errors.Is(err, pending.ErrFull) {
			t.Fatalf("Add to a full store = %v, want ErrFull", err)
		}
		mustAdd(t, s, entry("a", 1)) // already waiting: not a new entry
		if err := s.Settle(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		mustAdd(t, s, entry("c", 0))
		if st := stats(t, s); st.Depth != 2 {
			t.Fatalf("Depth = %d, want 2", st.Depth)
		}
	})
	t.Run("Reschedule", func(t *testing.T) {
		s := newStore(t, 10)
		mustAdd(t, s, entry("a", 0))
		e := claim(t, s, at(0), time.Minute, 1)[0]
		e.Attempts, e.NotBefore, e.LastError = 3, at(5), "boom"
		if err := s.Reschedule(ctx, e); err != nil {
			t.Fatal(err)
		}
		if got := claim(t, s, at(4), time.Minute, 10); len(got) != 0 {
			t.Fatalf("Claim before NotBefore = %v", keys(got))
		}
		got := claim(t, s, at(5), time.Minute, 10)
		if len(got) != 1 || got[0].Attempts != 3 || got[0].LastError != "boom" {
			t.Fatalf("after Reschedule: %+v", got)
		}
		if err := s.Settle(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Reschedule(ctx, e); err != nil {
			t.Fatal(err)
		}
		if st := stats(t, s); st.Depth != 0 {
			t.Fatalf("Reschedule of a settled entry brought it back: depth %d", st.Depth)
		}
	})
	t.Run("DeadLetters", func(t *testing.T) {
		s := newStore(t, 10)
		mustAdd(t, s, entry("a", 0))
		mustAdd(t, s, entry("b", 1))
		for i, k := range []string{"b", "a"} {
			e := claim(t, s, at(2), time.Minute, 10)
			if len(e) == 0 && i == 0 {
				t.Fatal("nothing to claim")
			}
			if err := s.Bury(ctx, pending.Dead{Entry: entry(k, 0), Reason: "refused " + k, Died: at(10 + i)}); err != nil {
				t.Fatal(err)
			}
		}
		d, err := s.DeadLetters(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != 2 || d[0].Key != "b" || d[0].Reason != "refused b" || !d[0].Died.Equal(at(10)) || d[1].Key != "a" {
			t.Fatalf("DeadLetters = %+v, want b then a with reasons", d)
		}
		if st := stats(t, s); st.Depth != 0 || st.Dead != 2 {
			t.Fatalf("Stats = %+v, want 0 waiting, 2 dead", st)
		}
		if err := s.Add(ctx, entry("a", 20)); !errors.Is(err, pending.ErrDead) {
			t.Fatalf("Add of a dead key = %v, want ErrDead", err)
		}
		if err := s.Forget(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		mustAdd(t, s, entry("a", 20))
		if d, _ := s.DeadLetters(ctx, 0); len(d) != 1 || d[0].Key != "b" {
			t.Fatalf("after Forget(a): %+v", d)
		}
	})
	t.Run("Stats", func(t *testing.T) {
		s := newStore(t, 10)
		if st := stats(t, s); st.Depth != 0 || !st.Oldest.IsZero() {
			t.Fatalf("empty store: %+v", st)
		}
		mustAdd(t, s, entry("new", 9))
		mustAdd(t, s, entry("old", 3))
		if st := stats(t, s); st.Depth != 2 || !st.Oldest.Equal(at(3)) {
			t.Fatalf("Stats = %+v, want depth 2, oldest at 3s", st)
		}
		if err := s.Settle(ctx, "old"); err != nil {
			t.Fatal(err)
		}
		if st := stats(t, s); st.Depth != 1 || !st.Oldest.Equal(at(9)) {
			t.Fatalf("Stats after settling the oldest = %+v", st)
		}
	})
	t.Run("ConcurrentClaimsAreDisjoint", func(t *testing.T) {
		const n, workers = 60, 4
		s := newStore(t, n)
		for i := range n {
			mustAdd(t, s, entry(fmt.Sprintf("k%03d", i), 0))
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					got, err := s.Claim(ctx, at(1), time.Hour, 7)
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, e := range got {
						seen[e.Key]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("%d of %d entries claimed", len(seen), n)
		}
		for k, c := range seen {
			if c != 1 {
				t.Fatalf("%s claimed %d times within one lease", k, c)
			}
		}
	})
}

func mustAdd(t *testing.T, s pending.Store, e pending.Entry) {
	t.Helper()
	if err := s.Add(context.Background(), e); err != nil {
		t.Fatalf("Add(%s): %v", e.Key, err)
	}
}

func claim(t *testing.T, s pending.Store, now time.Time, lease time.Duration, max int) []pending.Entry {
	t.Helper()
	got, err := s.Claim(context.Background(), now, lease, max)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

func stats(t *testing.T, s pending.Store) pending.Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

func keys(es []pending.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

// same compares two entries field by field, times by instant.
func same(got, want pending.Entry) error {
	switch {
	case got.Key != want.Key, got.Method != want.Method, string(got.Request) != string(want.Request),
		got.Attempts != want.Attempts, got.LastError != want.LastError:
		return fmt.Errorf("entry = %+v, want %+v", got, want)
	case !got.Enqueued.Equal(want.Enqueued), !got.NotBefore.Equal(want.NotBefore):
		return fmt.Errorf("times = %v, %v; want %v, %v", got.Enqueued, got.NotBefore, want.Enqueued, want.NotBefore)
	case fmt.Sprint(got.Metadata) != fmt.Sprint(want.Metadata), fmt.Sprint(got.Trace) != fmt.Sprint(want.Trace):
		return fmt.Errorf("metadata, trace = %v, %v; want %v, %v", got.Metadata, got.Trace, want.Metadata, want.Trace)
	}
	return nil
}
