package registry

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

type value struct {
	key   string
	worth Worth
}

func newRegistry(perMethod bool, max int) (*Registry[value], *int) {
	created := new(int)
	r := new(Registry[value])
	r.Init(perMethod, max,
		func(target, method string) *value { *created++; return &value{key: target + " " + method} },
		func(v *value) Worth { return v.worth })
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

// TestFullOfNeededValuesGrows: a key never goes without a value, and a
// needed value is never dropped for it.
func TestFullOfNeededValuesGrows(t *testing.T) {
	for _, perMethod := range []bool{false, true} {
		t.Run(fmt.Sprint("perMethod=", perMethod), func(t *testing.T) {
			r, _ := newRegistry(perMethod, 2)
			a, b := r.Get("a", "/s/M"), r.Get("b", "/s/M")
			a.worth, b.worth = Needed, Needed
			c := r.Get("c", "/s/M")
			if c == nil || r.Lookup("a", "/s/M") != a || r.Lookup("b", "/s/M") != b || r.Len() != 3 {
				t.Fatalf("c = %v, keys %q", c, keys(r))
			}
			// Once a value is no longer needed, the next key takes its
			// place and the registry stops growing.
			b.worth = Nothing
			r.Get("d", "/s/M")
			if r.Lookup("b", "/s/M") != nil || r.Lookup("a", "/s/M") != a || r.Len() != 3 {
				t.Fatalf("b was not dropped for d: %q", keys(r))
			}
		})
	}
}

// TestEvictsLeastRecentlyUsed: the value dropped is one not used lately.
func TestEvictsLeastRecentlyUsed(t *testing.T) {
	for _, perMethod := range []bool{false, true} {
		t.Run(fmt.Sprint("perMethod=", perMethod), func(t *testing.T) {
			r, _ := newRegistry(perMethod, 3)
			r.Get("a", "/s/M")
			r.Get("b", "/s/M")
			r.Get("c", "/s/M")
			r.Get("d", "/s/M") // a, the least recently used, goes
			r.Get("b", "/s/M")
			r.Get("e", "/s/M") // then c
			if want := []string{"b " + methodOf(perMethod), "d " + methodOf(perMethod), "e " + methodOf(perMethod)}; !slices.Equal(keys(r), want) {
				t.Fatalf("keys %q, want %q", keys(r), want)
			}
		})
	}
}

// TestPrefersValuesWorthNothing: a value worth Little is dropped only when
// every unused value is worth at least that.
func TestPrefersValuesWorthNothing(t *testing.T) {
	r, _ := newRegistry(false, 3)
	dead := r.Get("dead", "")
	dead.worth = Little
	for i := range 100 {
		r.Get(fmt.Sprint("churn", i), "")
		if r.Lookup("dead", "") != dead {
			t.Fatalf("the value worth Little was dropped after %d new keys, with values worth Nothing to drop", i+1)
		}
	}
	others := 0
	for v := range r.All() {
		if v != dead {
			v.worth = Little
			others++
		}
	}
	r.Get("x", "")
	r.Get("y", "")
	if r.Len() != 3 || others != 2 {
		t.Fatalf("%d values, want 3: values worth Little make room when nothing else can", r.Len())
	}
}

func methodOf(perMethod bool) string {
	if perMethod {
		return "/s/M"
	}
	return ""
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
