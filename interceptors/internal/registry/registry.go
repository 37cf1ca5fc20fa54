package registry

import (
	"iter"
	"sync"
	"sync/atomic"
)

// Worth says what dropping a value to make room would lose.
type Worth uint8

const (
	// Nothing: the value holds no information; a new one is as good (a
	// closed breaker that counted no failure, an idle compartment).
	Nothing Worth = iota
	// Little: the value holds information its owner can afford to lose
	// when room is short (a closed breaker's recent failures).
	Little
	// Needed: dropping the value would change what callers see (an open
	// breaker would let its calls through, a compartment with calls in
	// flight would lose count of them). It is never dropped.
	Needed
)

// Registry maps a call's target, or with per-method keys its target and
// method, to a *T created on first use. See Table for how it is kept.
type Registry[T any] struct {
	perMethod bool
	t         Table[Key, T]
}

// Key is a Registry's key; Method is "" without per-method keys.
type Key struct{ Target, Method string }

// Init empties r and sets it up; it must be called before any other
// method. create makes the value of a key; without per-method keys its
// method is "". worth says what dropping a value would lose. Both are
// called with the registry's lock held.
func (r *Registry[T]) Init(perMethod bool, max int, create func(target, method string) *T, worth func(*T) Worth) {
	r.perMethod = perMethod
	r.t.Init(max, func(k Key) *T { return create(k.Target, k.Method) }, worth)
}

func (r *Registry[T]) key(target, method string) Key {
	if !r.perMethod {
		method = ""
	}
	return Key{target, method}
}

// Get returns the value for a call, creating it on first use, and marks it
// used.
func (r *Registry[T]) Get(target, method string) *T { return r.t.Get(r.key(target, method)) }

// Lookup returns the value for target (and method, with per-method keys),
// or nil if there is none. It does not count as a use.
func (r *Registry[T]) Lookup(target, method string) *T { return r.t.Lookup(r.key(target, method)) }

// Len returns the number of values held.
func (r *Registry[T]) Len() int { return r.t.Len() }

// All yields every value, in no particular order.
func (r *Registry[T]) All() iter.Seq[*T] { return r.t.All() }

// Table maps keys to a *T created on first use. Lookups take no lock: the
// map is copied on write. Registry keys it by target and method; a layer
// that keeps state by target alone keys it by the target string.
//
// It holds about max values. When it is full, a new key takes the place of
// a value that was not used lately (the clock algorithm, an approximation
// of least recently used), preferring one whose Worth is Nothing over one
// whose Worth is Little. When every value is Needed or in use, the table
// grows past max: a new target is never left unguarded, and an open
// breaker is never dropped to make room for it. Values that stop being
// needed make room again as new keys come.
type Table[K comparable, T any] struct {
	max    int
	create func(K) *T
	worth  func(*T) Worth

	m atomic.Pointer[map[K]*slot[K, T]]

	mu    sync.Mutex    // serialises changes
	slots []*slot[K, T] // every value, in the order the clock hand visits them
	hand  int
}

// slot holds one value and whether it was used since the clock hand last
// passed it.
type slot[K comparable, T any] struct {
	key  K
	v    *T
	used atomic.Bool
}

// Init empties t and sets it up; it must be called before any other
// method. create makes the value of a key; worth says what dropping a
// value would lose. Both are called with the table's lock held.
func (t *Table[K, T]) Init(max int, create func(K) *T, worth func(*T) Worth) {
	t.max, t.create, t.worth = max, create, worth
	t.slots, t.hand = nil, 0
	m := map[K]*slot[K, T]{}
	t.m.Store(&m)
}

// Get returns the value of k, creating it on first use, and marks it used.
func (t *Table[K, T]) Get(k K) *T {
	if s := (*t.m.Load())[k]; s != nil && s.used.Load() {
		return s.v
	}
	return t.first(k)
}

// first is Get for a key not used since the clock hand last passed it, or
// never used.
func (t *Table[K, T]) first(k K) *T {
	s := (*t.m.Load())[k]
	if s == nil {
		s = t.add(k)
	}
	s.used.Store(true)
	return s.v
}

// Lookup returns the value of k, or nil if there is none. It does not
// count as a use.
func (t *Table[K, T]) Lookup(k K) *T {
	if s := (*t.m.Load())[k]; s != nil {
		return s.v
	}
	return nil
}

// Len returns the number of values held.
func (t *Table[K, T]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.slots)
}

// All yields every value, in no particular order.
func (t *Table[K, T]) All() iter.Seq[*T] {
	return func(yield func(*T) bool) {
		for _, s := range *t.m.Load() {
			if !yield(s.v) {
				return
			}
		}
	}
}

func (t *Table[K, T]) add(k K) *slot[K, T] {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := (*t.m.Load())[k]; s != nil {
		return s
	}
	if len(t.slots) >= t.max {
		t.evict()
	}
	s := &slot[K, T]{key: k, v: t.create(k)}
	t.slots = append(t.slots, s)
	t.m.Store(with(*t.m.Load(), k, s))
	return s
}

// evict drops one value that was not used since the hand last passed it,
// worth Nothing if there is one, else worth Little. The hand goes round
// twice at most: the first round may only clear use marks. Called with mu
// held.
func (t *Table[K, T]) evict() {
	fallback := -1
	for range 2 * len(t.slots) {
		if t.hand >= len(t.slots) {
			t.hand = 0
		}
		s := t.slots[t.hand]
		if !s.used.Swap(false) {
			switch t.worth(s.v) {
			case Nothing:
				t.drop(t.hand)
				return
			case Little:
				if fallback < 0 {
					fallback = t.hand
				}
			}
		}
		t.hand++
	}
	if fallback >= 0 {
		t.drop(fallback)
	}
}

// drop removes the value at index i of the clock. Called with mu held.
func (t *Table[K, T]) drop(i int) {
	s := t.slots[i]
	last := len(t.slots) - 1
	t.slots[i] = t.slots[last]
	t.slots[last] = nil
	t.slots = t.slots[:last]
	t.m.Store(without(*t.m.Load(), s.key))
}

// with returns a copy of m with k set to v.
func with[K comparable, V any](m map[K]V, k K, v V) *map[K]V {
	next := make(map[K]V, len(m)+1)
	for k, x := range m {
		next[k] = x
	}
	next[k] = v
	return &next
}

// without returns a copy of m without k.
func without[K comparable, V any](m map[K]V, k K) *map[K]V {
	next := make(map[K]V, len(m))
	for x, v := range m {
		if x != k {
			next[x] = v
		}
	}
	return &next
}
