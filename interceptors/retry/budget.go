package retry

import (
	"sync"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/registry"
)

// budgetSlots is the number of slots a budget's window is cut into: a
// deposit expires between TTL*(1-1/budgetSlots) and TTL after it was made.
const budgetSlots = 10

// maxTargets bounds the per-target budgets. Targets come from ClientConns,
// so a real client stays far below it; past it, a new target's budget
// takes the place of one not used lately.
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
// while it is at least one. The window's sums are kept as the slots
// change, so that reading the balance does not add up the slots.
type bucket struct {
	ratio float64
	floor float64 // MinPerSecond * TTL
	width time.Duration
	base  time.Time

	mu     sync.Mutex
	last   int64              // the latest stretch counted: the window is (last-budgetSlots, last]
	slots  [budgetSlots]tally // the stretch e's counts are in slots[e%budgetSlots]
	window tally              // the sums of slots
}

// tally is what a stretch of time, or the window, counts.
type tally struct{ calls, spent int64 }

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

// advance moves the window on to stretch e, resetting the slots of the
// stretches that left it. A stretch older than the window's latest (a
// clock reading taken a moment before another's) leaves it as it is.
// Called with mu held.
func (k *bucket) advance(e int64) {
	if e <= k.last {
		return
	}
	for s := max(k.last+1, e-budgetSlots+1); s <= e; s++ {
		t := &k.slots[s%budgetSlots]
		k.window.calls -= t.calls
		k.window.spent -= t.spent
		*t = tally{}
	}
	k.last = e
}

// add counts calls and spent tokens in the stretch now is in, unless that
// stretch has already left the window.
func (k *bucket) add(now time.Time, calls, spent int64) {
	e := k.epoch(now)
	k.mu.Lock()
	k.count(e, calls, spent)
	k.mu.Unlock()
}

// count adds calls and spent tokens to stretch e. Called with mu held.
func (k *bucket) count(e, calls, spent int64) {
	k.advance(e)
	if e > k.last-budgetSlots {
		t := &k.slots[e%budgetSlots]
		t.calls += calls
		t.spent += spent
		k.window.calls += calls
		k.window.spent += spent
	}
}

// balance returns the tokens available. Called with mu held.
func (k *bucket) balance() float64 {
	return k.ratio*float64(k.window.calls) + k.floor - float64(k.window.spent)
}

// deposit credits one call.
func (k *bucket) deposit(now time.Time) { k.add(now, 1, 0) }

// allows reports whether a retry could be sent now, without spending.
func (k *bucket) allows(now time.Time) bool {
	e := k.epoch(now)
	k.mu.Lock()
	k.advance(e)
	ok := k.balance() >= 1
	k.mu.Unlock()
	return ok
}

// withdraw takes one token for a retry or hedge and reports whether there
// was one.
func (k *bucket) withdraw(now time.Time) bool {
	e := k.epoch(now)
	k.mu.Lock()
	k.advance(e)
	ok := k.balance() >= 1
	if ok {
		k.slots[k.last%budgetSlots].spent++
		k.window.spent++
	}
	k.mu.Unlock()
	return ok
}

// owe takes one token for the retry of an attempt cut by its own timeout,
// even when none is left: the attempt got its timeout because the budget
// allowed a retry when it started (see call.begin), and cutting it without
// one would fail a call that could have succeeded. The balance may go
// below one by the attempts in flight when the budget ran out; from then
// on attempts get no timeout of their own until it recovers, so the
// overshoot stays that small.
func (k *bucket) owe(now time.Time) { k.add(now, 0, 1) }

// refund gives back the token of a retry that succeeded: it did the work
// of the call it retried and added no futile load, so it is not counted
// against the retries to come.
func (k *bucket) refund(now time.Time) { k.add(now, 0, -1) }

// budgets holds the buckets by target, in a registry.Table: lookups take
// no lock, and past maxTargets a new target takes the place of one not
// used lately.
type budgets struct {
	t registry.Table[string, bucket]
}

func newBudgets(cfg Budget, clk clock.Clock) *budgets {
	bs := &budgets{}
	bs.t.Init(maxTargets,
		func(string) *bucket { return newBucket(cfg, clk.Now()) },
		// A bucket's window holds the calls and retries of the last TTL:
		// a new one starts from the floor alone.
		func(*bucket) registry.Worth { return registry.Little })
	return bs
}

func (bs *budgets) get(target string) *bucket { return bs.t.Get(target) }
