package idempotency

import (
	"fmt"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// A full map of unsaved outcomes makes room from the expired ones, so that
// the store's failures over a long life do not end the fallback for good;
// live ones are kept and a new one is then refused.
func TestUnsavedDropsExpiredWhenFull(t *testing.T) {
	t0 := time.Unix(1000, 0)
	clk := clock.NewFake(t0)
	var u unsaved
	for i := range maxUnsaved {
		u.put(Key{Key: fmt.Sprint("old-", i)}, "t", Fingerprint{}, &Outcome{}, t0, t0.Add(time.Minute))
	}
	clk.Advance(2 * time.Minute)
	later := clk.Now()
	u.put(Key{Key: "live"}, "t", Fingerprint{}, &Outcome{}, t0, later.Add(time.Hour))
	if _, ok := u.get(Key{Key: "live"}, Fingerprint{}, clk); ok {
		t.Fatal("a full map took an outcome before any expired")
	}
	u.put(Key{Key: "new"}, "t", Fingerprint{}, &Outcome{}, later, later.Add(time.Minute))
	if _, ok := u.get(Key{Key: "new"}, Fingerprint{}, clk); !ok {
		t.Fatal("a map full of expired outcomes refused a new one")
	}
	if n := len(u.m); n != 1 {
		t.Errorf("%d outcomes kept, want 1 (the expired ones dropped)", n)
	}
	if n := u.size.Load(); n != 1 {
		t.Errorf("size %d after the expired ones were dropped, want 1", n)
	}
}

// The fallback's lookup skips the map only when it holds nothing: after
// any sequence of puts and forgets, every outcome it holds is found, and
// its size is the number it holds.
func TestUnsavedFoundWhateverHappenedBefore(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type op struct {
		forget bool
		key    string
	}
	for _, tc := range []struct {
		name string
		ops  []op
		want []string // keys held at the end
	}{
		{"nothing", nil, nil},
		{"one put", []op{{false, "a"}}, []string{"a"}},
		{"put and forget", []op{{false, "a"}, {true, "a"}}, nil},
		{"two, one forgotten", []op{{false, "a"}, {false, "b"}, {true, "a"}}, []string{"b"}},
		{"forget of a key not held", []op{{false, "a"}, {true, "x"}, {true, "x"}}, []string{"a"}},
		{"forget before any put", []op{{true, "a"}, {false, "b"}}, []string{"b"}},
		{"same key put twice, forgotten once", []op{{false, "a"}, {false, "a"}, {true, "a"}}, nil},
		{"same key put twice, another kept", []op{{false, "a"}, {false, "a"}, {false, "b"}, {true, "a"}}, []string{"b"}},
		{"emptied, then put again", []op{{false, "a"}, {true, "a"}, {false, "a"}}, []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			var u unsaved
			for _, o := range tc.ops {
				if o.forget {
					u.forget(Key{Key: o.key})
				} else {
					u.put(Key{Key: o.key}, "t", Fingerprint{}, &Outcome{Response: []byte(o.key)}, t0, t0.Add(time.Hour))
				}
			}
			for _, k := range tc.want {
				o, ok := u.get(Key{Key: k}, Fingerprint{}, clk)
				if !ok || string(o.Response) != k {
					t.Errorf("get(%q) = %v, %v; want its outcome", k, o, ok)
				}
			}
			if n := u.size.Load(); n != int64(len(tc.want)) {
				t.Errorf("size %d, want %d", n, len(tc.want))
			}
			if _, ok := u.get(Key{Key: "never put"}, Fingerprint{}, clk); ok {
				t.Error("found an outcome for a key never put")
			}
		})
	}
}
