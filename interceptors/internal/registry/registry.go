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
// method, to a *T created on first use. Lookups take no lock: maps are
// copied on write.
//
// It holds about max values. When it is full, a new key takes the place of
// a value that was not used lately (the clock algorithm, an approximation
// of least recently used), preferring one whose Worth is Nothing over one
// whose Worth is Little. When every value is Needed or in use, the
// registry grows past max: a new target is never left unguarded, and an
// open breaker is never dropped to make room for it. Values that stop
// being needed make room again as new keys come.
type Registry[T any] struct {
	perMethod bool
	max       int
	create    func(target, method string) *T
	worth     func(*T) Worth

	// One of the two maps is used: by target, or with per-method keys by
	// target and method.
	targets atomic.Pointer[map[string]*slot[T]]
	keys    atomic.Pointer[map[key]*slot[T]]

	mu    sync.Mutex // serialises changes
	slots []*slot[T] // every value, in the order the clock hand visits them
	hand  int
}

// key is a value's key; method is "" without per-method keys.
type key struct{ target, method string }

// slot holds one value and whether it was used since the clock hand last
// passed it.
type slot[T any] struct {
	key  key
	v    *T
	used atomic.Bool
}

// Init empties r and sets it up; it must be called before any other
// method. create makes the value of a key; without per-method keys its
// method is "". worth says what dropping a value would lose. Both are
// called with the registry's lock held.
func (r *Registry[T]) Init(perMethod bool, max int, create func(target, method string) *T, worth func(*T) Worth) {
	r.perMethod, r.max, r.create, r.worth = perMethod, max, create, worth
	r.slots, r.hand = nil, 0
	targets, keys := map[string]*slot[T]{}, map[key]*slot[T]{}
	r.targets.Store(&targets)
	r.keys.Store(&keys)
}

// Get returns the value for a call, creating it on first use, and marks it
// used.
func (r *Registry[T]) Get(target, method string) *T {
	s := r.find(target, method)
	if s == nil {
		s = r.add(target, method)
	}
	if !s.used.Load() {
		s.used.Store(true)
	}
	return s.v
}

// Lookup returns the value for target (and method, with per-method keys),
// or nil if there is none. It does not count as a use.
func (r *Registry[T]) Lookup(target, method string) *T {
	if s := r.find(target, method); s != nil {
		return s.v
	}
	return nil
}

func (r *Registry[T]) find(target, method string) *slot[T] {
	if !r.perMethod {
		return (*r.targets.Load())[target]
	}
	return (*r.keys.Load())[key{target, method}]
}

// Len returns the number of values held.
func (r *Registry[T]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.slots)
}

// All yields every value, in no particular order.
func (r *Registry[T]) All() iter.Seq[*T] {
	return func(yield func(*T) bool) {
		if !r.perMethod {
			values(*r.targets.Load(), yield)
			return
		}
		values(*r.keys.Load(), yield)
	}
}

func values[K comparable, T any](m map[K]*slot[T], yield func(*T) bool) {
	for _, s := range m {
		if !yield(s.v) {
			return
		}
	}
}

func (r *Registry[T]) add(target, method string) *slot[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.find(target, method); s != nil {
		return s
	}
	if len(r.slots) >= r.max {
		r.evict()
	}
	if !r.perMethod {
		method = ""
	}
	s := &slot[T]{key: key{target, method}, v: r.create(target, method)}
	r.slots = append(r.slots, s)
	if !r.perMethod {
		r.targets.Store(with(*r.targets.Load(), target, s))
	} else {
		r.keys.Store(with(*r.keys.Load(), s.key, s))
	}
	return s
}

// evict drops one value that was not used since the hand last passed it,
// worth Nothing if there is one, else worth Little. The hand goes round
// twice at most: the first round may only clear use marks. Called with mu
// held.
func (r *Registry[T]) evict() {
	fallback := -1
	for range 2 * len(r.slots) {
		if r.hand >= len(r.slots) {
			r.hand = 0
		}
		s := r.slots[r.hand]
		if !s.used.Swap(false) {
			switch r.worth(s.v) {
			case Nothing:
				r.drop(r.hand)
				return
			case Little:
				if fallback < 0 {
					fallback = r.hand
				}
			}
		}
		r.hand++
	}
	if fallback >= 0 {
		r.drop(fallback)
	}
}

// drop removes the value at index i of the clock. Called with mu held.
func (r *Registry[T]) drop(i int) {
	s := r.slots[i]
	last := len(r.slots) - 1
	r.slots[i] = r.slots[last]
	r.slots[last] = nil
	r.slots = r.slots[:last]
	if !r.perMethod {
		r.targets.Store(without(*r.targets.Load(), s.key.target))
	} else {
		r.keys.Store(without(*r.keys.Load(), s.key))
	}
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
