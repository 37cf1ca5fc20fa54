package registry

import (
	"iter"
	"sync"
	"sync/atomic"
)

// Registry maps a call's target, or with per-method keys its target and
// method, to a *T created on first use. Maps are copied on write, so
// lookups take no lock. It holds at most max values: when it is full, a
// new key takes the place of a value that idle reports true for, and
// when there is none, Get returns nil.
type Registry[T any] struct {
	perMethod bool
	max       int
	create    func(target, method string) *T
	idle      func(*T) bool

	// One of the two maps is used: values by target, or with per-method
	// keys, entries by target holding values by method.
	flat    atomic.Pointer[map[string]*T]
	targets atomic.Pointer[map[string]*entry[T]]
	mu      sync.Mutex // serialises changes
	count   int        // values held, under mu

	// first is the value of the first key created, found by comparing
	// strings rather than hashing them: an interceptor serves one
	// connection, so one target, in the common case. Cleared on eviction.
	first atomic.Pointer[firstKey[T]]
}

type firstKey[T any] struct {
	target, method string
	v              *T
}

// entry is one target's values by method.
type entry[T any] struct {
	methods atomic.Pointer[map[string]*T]
}

// Init empties r and sets it up; it must be called before any other
// method. create makes the value of a key; without per-method keys its
// method is "". idle says whether a value may be dropped to make room.
// Both are called with the registry's lock held.
func (r *Registry[T]) Init(perMethod bool, max int, create func(target, method string) *T, idle func(*T) bool) {
	r.perMethod, r.max, r.create, r.idle, r.count = perMethod, max, create, idle, 0
	r.first.Store(nil)
	flat := map[string]*T{}
	r.flat.Store(&flat)
	targets := map[string]*entry[T]{}
	r.targets.Store(&targets)
}

// Get returns the value for a call, creating it on first use, or nil when
// the registry is full and no value is idle.
func (r *Registry[T]) Get(target, method string) *T {
	if v := r.Lookup(target, method); v != nil {
		return v
	}
	return r.add(target, method)
}

// Lookup returns the value for target (and method, with per-method keys),
// or nil if there is none.
func (r *Registry[T]) Lookup(target, method string) *T {
	if f := r.first.Load(); f != nil && f.target == target && (!r.perMethod || f.method == method) {
		return f.v
	}
	if !r.perMethod {
		return (*r.flat.Load())[target]
	}
	if e := (*r.targets.Load())[target]; e != nil {
		return (*e.methods.Load())[method]
	}
	return nil
}

// Len returns the number of values held.
func (r *Registry[T]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// All yields every value, in no particular order.
func (r *Registry[T]) All() iter.Seq[*T] {
	return func(yield func(*T) bool) {
		if !r.perMethod {
			for _, v := range *r.flat.Load() {
				if !yield(v) {
					return
				}
			}
			return
		}
		for _, e := range *r.targets.Load() {
			for _, v := range *e.methods.Load() {
				if !yield(v) {
					return
				}
			}
		}
	}
}

func (r *Registry[T]) add(target, method string) *T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v := r.Lookup(target, method); v != nil {
		return v
	}
	if r.count >= r.max && !r.evict() {
		return nil
	}
	if !r.perMethod {
		method = ""
	}
	v := r.create(target, method)
	r.count++
	if r.first.Load() == nil {
		defer r.first.Store(&firstKey[T]{target: target, method: method, v: v})
	}
	if !r.perMethod {
		r.flat.Store(with(*r.flat.Load(), target, v))
		return v
	}
	targets := *r.targets.Load()
	e, ok := targets[target]
	if !ok {
		e = &entry[T]{}
		e.methods.Store(&map[string]*T{method: v})
		r.targets.Store(with(targets, target, e))
		return v
	}
	e.methods.Store(with(*e.methods.Load(), method, v))
	return v
}

// evict drops one idle value. Called with mu held.
func (r *Registry[T]) evict() bool {
	// The dropped value may be the first key's: forget it, whichever it
	// is, rather than compare.
	r.first.Store(nil)
	if !r.perMethod {
		flat := *r.flat.Load()
		for t, v := range flat {
			if r.idle(v) {
				r.flat.Store(without(flat, t))
				r.count--
				return true
			}
		}
		return false
	}
	for _, e := range *r.targets.Load() {
		methods := *e.methods.Load()
		for m, v := range methods {
			if r.idle(v) {
				e.methods.Store(without(methods, m))
				r.count--
				return true
			}
		}
	}
	return false
}

// with returns a copy of m with key set to v.
func with[V any](m map[string]V, key string, v V) *map[string]V {
	next := make(map[string]V, len(m)+1)
	for k, x := range m {
		next[k] = x
	}
	next[key] = v
	return &next
}

// without returns a copy of m without key.
func without[V any](m map[string]V, key string) *map[string]V {
	next := make(map[string]V, len(m))
	for k, v := range m {
		if k != key {
			next[k] = v
		}
	}
	return &next
}
