// Package registry keeps the per-target state of the interceptors that
// hold one (a breaker, a bulkhead compartment): created on first use,
// found without locks on the call path, bounded in number.
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

	targets atomic.Pointer[map[string]*entry[T]]
	mu      sync.Mutex // serialises changes
	count   int        // values held, under mu
}

// entry is one target's value, or with per-method keys its methods'.
type entry[T any] struct {
	v       *T
	methods atomic.Pointer[map[string]*T]
}

// Init empties r and sets it up; it must be called before any other
// method. create makes the value of a key; without per-method keys its
// method is "". idle says whether a value may be dropped to make room.
// Both are called with the registry's lock held.
func (r *Registry[T]) Init(perMethod bool, max int, create func(target, method string) *T, idle func(*T) bool) {
	r.perMethod, r.max, r.create, r.idle, r.count = perMethod, max, create, idle, 0
	empty := map[string]*entry[T]{}
	r.targets.Store(&empty)
}

// Get returns the value for a call, creating it on first use, or nil when
// the registry is full and no value is idle.
func (r *Registry[T]) Get(target, method string) *T {
	if e, ok := (*r.targets.Load())[target]; ok {
		if !r.perMethod {
			return e.v
		}
		if v, ok := (*e.methods.Load())[method]; ok {
			return v
		}
	}
	return r.add(target, method)
}

// Lookup returns the value for target (and method, with per-method keys),
// or nil if there is none.
func (r *Registry[T]) Lookup(target, method string) *T {
	e, ok := (*r.targets.Load())[target]
	switch {
	case !ok:
		return nil
	case !r.perMethod:
		return e.v
	}
	return (*e.methods.Load())[method]
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
		for _, e := range *r.targets.Load() {
			if !r.perMethod {
				if !yield(e.v) {
					return
				}
				continue
			}
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
	targets := *r.targets.Load()
	e, ok := targets[target]
	if !ok {
		e = &entry[T]{}
		empty := map[string]*T{}
		e.methods.Store(&empty)
		next := make(map[string]*entry[T], len(targets)+1)
		for k, x := range targets {
			next[k] = x
		}
		next[target] = e
		defer r.targets.Store(&next) // publish once e is complete
	}
	if !r.perMethod {
		e.v = v
		return v
	}
	old := *e.methods.Load()
	next := make(map[string]*T, len(old)+1)
	for k, x := range old {
		next[k] = x
	}
	next[method] = v
	e.methods.Store(&next)
	return v
}

// evict drops one idle value. Called with mu held.
func (r *Registry[T]) evict() bool {
	targets := *r.targets.Load()
	for t, e := range targets {
		if !r.perMethod {
			if !r.idle(e.v) {
				continue
			}
			r.targets.Store(without(targets, t))
			r.count--
			return true
		}
		methods := *e.methods.Load()
		for m, v := range methods {
			if !r.idle(v) {
				continue
			}
			e.methods.Store(without(methods, m))
			r.count--
			return true
		}
	}
	return false
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
