package breaker

import (
	"math"
	"sync"
	"sync/atomic"
)

// Outcome bits stored in the windows.
const (
	bitFailure uint32 = 1
	bitSlow    uint32 = 2
)

// countWindow holds the outcomes of the last size calls in a ring of
// atomic slots, with running totals. Recording a plain success that
// overwrites a plain success only bumps the position.
type countWindow struct {
	size     uint64
	pos      atomic.Uint64
	failures atomic.Int64
	slow     atomic.Int64
	slots    []atomic.Uint32
}

func newCountWindow(n int) *countWindow {
	return &countWindow{size: uint64(n), slots: make([]atomic.Uint32, n)}
}

func (w *countWindow) record(v uint32) {
	s := &w.slots[(w.pos.Add(1)-1)%w.size]
	if v == 0 && s.Load() == 0 {
		return
	}
	old := s.Swap(v)
	if old == v {
		return
	}
	if d := int64(v&bitFailure) - int64(old&bitFailure); d != 0 {
		w.failures.Add(d)
	}
	if d := int64(v&bitSlow>>1) - int64(old&bitSlow>>1); d != 0 {
		w.slow.Add(d)
	}
}

func (w *countWindow) counts() (requests, failures, slow uint32) {
	p := w.pos.Load()
	return uint32(min(p, w.size)), uint32(max(w.failures.Load(), 0)), uint32(max(w.slow.Load(), 0))
}

func (w *countWindow) reset() {
	for i := range w.slots {
		w.slots[i].Store(0)
	}
	w.pos.Store(0)
	w.failures.Store(0)
	w.slow.Store(0)
}

// bucket is one slice of a time window. epoch is the bucket's index in
// time (now / width); a bucket whose epoch is not current is stale.
type bucket struct {
	epoch                atomic.Int64
	total, failures, slw atomic.Uint32
}

// timeWindow holds counts per time bucket. Buckets are reused round-robin;
// rotating one into a new epoch takes mu, which happens at most once per
// bucket width.
type timeWindow struct {
	width   int64
	mu      sync.Mutex
	buckets [timeBuckets]bucket
}

func newTimeWindow(d int64) *timeWindow {
	w := &timeWindow{width: d / timeBuckets}
	w.reset()
	return w
}

func (w *timeWindow) record(now int64, v uint32) {
	e := now / w.width
	b := &w.buckets[e%timeBuckets]
	if cur := b.epoch.Load(); cur != e {
		if cur > e {
			return // a late report for a bucket already reused
		}
		w.mu.Lock()
		if b.epoch.Load() < e {
			b.total.Store(0)
			b.failures.Store(0)
			b.slw.Store(0)
			b.epoch.Store(e)
		}
		w.mu.Unlock()
	}
	b.total.Add(1)
	if v&bitFailure != 0 {
		b.failures.Add(1)
	}
	if v&bitSlow != 0 {
		b.slw.Add(1)
	}
}

func (w *timeWindow) counts(now int64) (requests, failures, slow uint32) {
	e := now / w.width
	for i := range w.buckets {
		b := &w.buckets[i]
		if be := b.epoch.Load(); be > e-timeBuckets && be <= e {
			requests += b.total.Load()
			failures += b.failures.Load()
			slow += b.slw.Load()
		}
	}
	return
}

func (w *timeWindow) reset() {
	for i := range w.buckets {
		b := &w.buckets[i]
		b.epoch.Store(math.MinInt64)
		b.total.Store(0)
		b.failures.Store(0)
		b.slw.Store(0)
	}
}

// recentCalls holds the time and outcome of the last calls, for
// FailuresWithin, which asks how many of the calls within an interval
// failed. Each slot is one word, the call's clock offset shifted left by
// one with the failure in the low bit, so that writers take no lock.
type recentCalls struct {
	pos   atomic.Uint64
	slots []atomic.Int64
}

func newRecentCalls(n int) *recentCalls {
	w := &recentCalls{slots: make([]atomic.Int64, n)}
	w.reset()
	return w
}

func (w *recentCalls) record(now int64, failed bool) {
	v := now << 1
	if failed {
		v |= 1
	}
	w.slots[(w.pos.Add(1)-1)%uint64(len(w.slots))].Store(v)
}

// within counts the calls held that ended less than d before now, and how
// many of them failed.
func (w *recentCalls) within(now, d int64) (requests, failures uint32) {
	for i := range w.slots {
		v := w.slots[i].Load()
		if v == math.MinInt64 || now-v>>1 >= d {
			continue
		}
		requests++
		failures += uint32(v & 1)
	}
	return
}

func (w *recentCalls) reset() {
	for i := range w.slots {
		w.slots[i].Store(math.MinInt64)
	}
	w.pos.Store(0)
}
