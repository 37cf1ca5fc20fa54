package idempotency

import (
	"fmt"
	"testing"
	"time"
)

// A full map of unsaved outcomes makes room from the expired ones, so that
// the store's failures over a long life do not end the fallback for good;
// live ones are kept and a new one is then refused.
func TestUnsavedDropsExpiredWhenFull(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var u unsaved
	for i := range maxUnsaved {
		u.put(Key{Key: fmt.Sprint("old-", i)}, "t", Fingerprint{}, &Outcome{}, t0, t0.Add(time.Minute))
	}
	later := t0.Add(2 * time.Minute)
	u.put(Key{Key: "live"}, "t", Fingerprint{}, &Outcome{}, t0, later.Add(time.Hour))
	if _, ok := u.get(Key{Key: "live"}, Fingerprint{}, later); ok {
		t.Fatal("a full map took an outcome before any expired")
	}
	u.put(Key{Key: "new"}, "t", Fingerprint{}, &Outcome{}, later, later.Add(time.Minute))
	if _, ok := u.get(Key{Key: "new"}, Fingerprint{}, later); !ok {
		t.Fatal("a map full of expired outcomes refused a new one")
	}
	if n := len(u.m); n != 1 {
		t.Errorf("%d outcomes kept, want 1 (the expired ones dropped)", n)
	}
}
