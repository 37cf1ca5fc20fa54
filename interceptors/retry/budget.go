package retry

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// budgetSlots is the number of slots a budget's window is cut into: a
// deposit expires between TTL*(1-1/budgetSlots) and TTL after it was made.
const budgetSlots = 10

// maxTargets bounds the per-target budgets. Targets come from ClientConns,
// so a real client stays far below it; past it, further targets share one
// budget.
const maxTargets = 1024

// bucket is one target's retry budget over a sliding window of TTL, cut
// into budgetSlots slots. Each slot counts the calls and the spent tokens
// (retries and hedges sent, minus retries refunded) of its stretch of
// time; a slot is reused, and its counts reset, when its stretch comes
// round again. The balance is
//
//	Ratio * calls + MinPerSecond * TTL - spent
//
// over the slots still in the window, and a retry or hedge may be sent
// while it is at least one.
//
// Counts are atomic and lock-free: under contention a count added while
// its slot is being reset may be lost, which moves the balance by a token
// or two at most.
type bucket struct {
	ratio float64
	floor float64 // MinPerSecond * TTL
	width time.Duration
	base  time.Time
	slots [budgetSlots]slot
}

type slot struct {
	epoch atomic.Int64 // the stretch of time the counts belong to: elapsed / width
	calls atomic.Int64
	spent atomic.Int64
}

func newBucket(b Budget, now time.Time) *bucket {
	return &bucket{
		ratio: b.Ratio,
		floor: b.MinPerSecond * b.TTL.Seconds(),
		width: max(b.TTL/budgetSlots, 1),
		base:  now,
	}
}

// epoch returns the number of the stretch of time now is in.
func (k *bucket) epoch(now time.Time) int64 {
	return int64(now.Sub(k.base)/k.width) + 1
}

// current returns the slot of epoch e, reset if it held an older stretch.
func (k *bucket) current(e int64) *slot {
	s := &k.slots[e%budgetSlots]
	if old := s.epoch.Load(); old != e && s.epoch.CompareAndSwap(old, e) {
		s.calls.Store(0)
		s.spent.Store(0)
	}
	return s
}

// deposit credits one call.
func (k *bucket) deposit(now time.Time) { k.current(k.epoch(now)).calls.Add(1) }

// balance returns the tokens available in epoch e.
func (k *bucket) balance(e int64) float64 {
	var calls, spent int64
	for i := range k.slots {
		s := &k.slots[i]
		if se := s.epoch.Load(); se > e-budgetSlots && se <= e {
			calls += s.calls.Load()
			spent += s.spent.Load()
		}
	}
	return k.ratio*float64(calls) + k.floor - float64(spent)
}

// allows reports whether a retry could be sent now, without spending.
func (k *bucket) allows(now time.Time) bool { return k.balance(k.epoch(now)) >= 1 }

// withdraw takes one token for a retry or hedge and reports whether there
// was one.
func (k *bucket) withdraw(now time.Time) bool {
	e := k.epoch(now)
	if k.balance(e) < 1 {
		return false
	}
	k.current(e).spent.Add(1)
	return true
}

// refund gives back the token of a retry that succeeded: it did the work
// of the call it retried and added no futile load, so it is not counted
// against the retries to come.
func (k *bucket) refund(now time.Time) { k.current(k.epoch(now)).spent.Add(-1) }

// budgets holds the buckets by target.
type budgets struct {
	cfg   Budget
	clock clock.Clock
	m     sync.Map // target -> *bucket
	mu    sync.Mutex
	n     int     // buckets in m
	extra *bucket // shared by targets past maxTargets
}

func newBudgets(cfg Budget, clk clock.Clock) *budgets {
	return &budgets{cfg: cfg, clock: clk}
}

func (bs *budgets) get(target string) *bucket {
	if b, ok := bs.m.Load(target); ok {
		return b.(*bucket)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b, ok := bs.m.Load(target); ok {
		return b.(*bucket)
	}
	if bs.n < maxTargets {
		b := newBucket(bs.cfg, bs.clock.Now())
		bs.m.Store(target, b)
		bs.n++
		return b
	}
	if bs.extra == nil {
		bs.extra = newBucket(bs.cfg, bs.clock.Now())
	}
	return bs.extra
}
