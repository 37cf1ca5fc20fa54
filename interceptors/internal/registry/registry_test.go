package registry

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

type value struct {
	key  string
	busy bool
}

func newRegistry(perMethod bool, max int) (*Registry[value], *int) {
	created := new(int)
	r := new(Registry[value])
	r.Init(perMethod, max,
		func(target, method string) *value { *created++; return &value{key: target + " " + method} },
		func(v *value) bool { return !v.busy })
	return r, created
}

func keys(r *Registry[value]) []string {
	var out []string
	for v := range r.All() {
		out = append(out, v.key)
	}
	slices.Sort(out)
	return out
}

func TestPerTarget(t *testing.T) {
	r, created := newRegistry(false, 10)
	if v := r.Lookup("a", "/s/M"); v != nil {
		t.Fatalf("Lookup before Get = %v", v)
	}
	a := r.Get("a", "/s/M")
	if a.key != "a " || r.Get("a", "/s/N") != a || r.Lookup("a", "/other") != a {
		t.Fatalf("one value per target: %+v", a)
	}
	r.Get("b", "/s/M")
	if *created != 2 || !slices.Equal(keys(r), []string{"a ", "b "}) {
		t.Fatalf("created %d, keys %q", *created, keys(r))
	}
}

func TestPerMethod(t *testing.T) {
	r, created := newRegistry(true, 10)
	m, n := r.Get("a", "/s/M"), r.Get("a", "/s/N")
	if m == n || r.Get("a", "/s/M") != m || r.Lookup("a", "/s/N") != n || r.Lookup("a", "/s/O") != nil {
		t.Fatal("one value per target and method")
	}
	if *created != 2 || !slices.Equal(keys(r), []string{"a /s/M", "a /s/N"}) {
		t.Fatalf("created %d, keys %q", *created, keys(r))
	}
}

func TestFull(t *testing.T) {
	for _, perMethod := range []bool{false, true} {
		t.Run(fmt.Sprint("perMethod=", perMethod), func(t *testing.T) {
			r, _ := newRegistry(perMethod, 2)
			a, b := r.Get("a", "/s/M"), r.Get("b", "/s/M")
			a.busy, b.busy = true, true
			if v := r.Get("c", "/s/M"); v != nil {
				t.Fatalf("a full registry with nothing idle made %+v", v)
			}
			b.busy = false
			if v := r.Get("c", "/s/M"); v == nil || r.Lookup("b", "/s/M") != nil || r.Lookup("a", "/s/M") != a {
				t.Fatalf("the idle value did not make room: %q", keys(r))
			}
			if n := len(keys(r)); n != 2 || r.Len() != 2 {
				t.Fatalf("%d values, want 2", n)
			}
		})
	}
}

func TestConcurrentGet(t *testing.T) {
	r, created := newRegistry(true, 1000)
	var wg sync.WaitGroup
	got := make([][]*value, 8)
	for g := range got {
		wg.Go(func() {
			for i := range 50 {
				got[g] = append(got[g], r.Get(fmt.Sprint("t", i%5), fmt.Sprint("/s/M", i%10)))
			}
		})
	}
	wg.Wait()
	if *created != 10 {
		t.Fatalf("created %d values, want 10 (one per key)", *created)
	}
	for g := range got {
		if !slices.Equal(got[g], got[0]) {
			t.Fatalf("goroutine %d got other values than goroutine 0", g)
		}
	}
}

// TestFirstKeyEvicted: the first key's value, found without hashing, is
// forgotten with it when it is dropped to make room.
func TestFirstKeyEvicted(t *testing.T) {
	for _, perMethod := range []bool{false, true} {
		r, created := newRegistry(perMethod, 1)
		first := r.Get("a", "/s/M")
		if r.Get("a", "/s/M") != first {
			t.Fatalf("perMethod %v: the first key's value changed", perMethod)
		}
		second := r.Get("b", "/s/M") // evicts a's idle value
		if second == nil || second == first {
			t.Fatalf("perMethod %v: b got %v", perMethod, second)
		}
		if v := r.Lookup("a", "/s/M"); v != nil {
			t.Errorf("perMethod %v: the evicted first key still finds %+v", perMethod, v)
		}
		if again := r.Get("a", "/s/M"); again == first || *created != 3 {
			t.Errorf("perMethod %v: a after eviction: same value %v, %d created", perMethod, again == first, *created)
		}
	}
}
