package retry

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// milli is the bucket's fixed-point unit: balances are kept in thousandths
// of a token so that deposits are a single atomic add.
const milli = 1000

// maxTargets bounds the per-target budgets. Targets come from ClientConns,
// so a real client stays far below it; past it, further targets share one
// budget.
const maxTargets = 1024

// bucket is one target's retry budget. Deposits (one per call, on the hot
// path) are one atomic load and add; withdrawals (one per retry or hedge)
// take a mutex to add the clock's floor.
type bucket struct {
	tokens  atomic.Int64 // thousandths of a token
	ratio   int64        // deposit per call
	max     int64        // capacity
	perSec  float64      // floor, thousandths of a token per second
	mu      sync.Mutex
	last    time.Time // last floor refill
	started bool
}

func newBucket(b Budget) *bucket {
	k := &bucket{
		ratio:  int64(b.Ratio * milli),
		max:    int64(b.Burst * milli),
		perSec: b.MinPerSecond * milli,
	}
	if k.ratio < 1 {
		k.ratio = 1
	}
	k.tokens.Store(k.max)
	return k
}

// deposit credits one call. Concurrent deposits may overshoot the capacity
// by at most one deposit each, which is harmless.
func (k *bucket) deposit() {
	if k.tokens.Load() < k.max {
		k.tokens.Add(k.ratio)
	}
}

// withdraw takes one token for a retry or hedge and reports whether there
// was one.
func (k *bucket) withdraw(clk clock.Clock) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.perSec > 0 {
		now := clk.Now()
		if !k.started {
			k.started, k.last = true, now
		} else if el := now.Sub(k.last); el > 0 {
			add := int64(el.Seconds() * k.perSec)
			if add > 0 {
				k.last = now
				for {
					t := k.tokens.Load()
					n := min(t+add, k.max)
					if n <= t || k.tokens.CompareAndSwap(t, n) {
						break
					}
				}
			}
		}
	}
	for {
		t := k.tokens.Load()
		if t < milli {
			return false
		}
		if k.tokens.CompareAndSwap(t, t-milli) {
			return true
		}
	}
}

// budgets holds the buckets by target. The last bucket used is cached so
// that the common case, one ClientConn per interceptor, costs a pointer
// load and a string comparison that succeeds on the pointer.
type budgets struct {
	cfg   Budget
	last  atomic.Pointer[targetBucket]
	mu    sync.Mutex
	m     map[string]*bucket
	extra *bucket // shared by targets past maxTargets
}

type targetBucket struct {
	target string
	b      *bucket
}

func newBudgets(cfg Budget) *budgets {
	return &budgets{cfg: cfg, m: map[string]*bucket{}}
}

func (bs *budgets) get(target string) *bucket {
	if l := bs.last.Load(); l != nil && l.target == target {
		return l.b
	}
	bs.mu.Lock()
	b, ok := bs.m[target]
	if !ok {
		if len(bs.m) < maxTargets {
			b = newBucket(bs.cfg)
			bs.m[target] = b
		} else {
			if bs.extra == nil {
				bs.extra = newBucket(bs.cfg)
			}
			b = bs.extra
		}
	}
	bs.mu.Unlock()
	bs.last.Store(&targetBucket{target: target, b: b})
	return b
}
