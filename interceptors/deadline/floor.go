package deadline

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsoft/failsoft/interceptors/internal/registry"
)

// A learned floor: a call whose budget is shorter than every recent
// successful call of its method cannot be answered in time, so it is
// failed fast rather than sent. Sent, it would end in DEADLINE_EXCEEDED,
// which the breaker, the throttle and outlier ejection take for a sick
// target, and they would then shed the calls of callers with budgets the
// target meets.
const (
	// floorPeriod is how long a floor is learned over: the fastest
	// success of the current period and of the previous one.
	floorPeriod = int64(10 * time.Second)
	// floorAnswers is how many successes a period needs before its
	// fastest counts: one early answer, slowed by a connection's set-up,
	// must not fail the calls that follow.
	floorAnswers = 3
	// floorMethods bounds the methods learned; past it, a new method's
	// floor takes the place of one not used lately.
	floorMethods = 1024
)

// newFloors returns the learned floors by method, in a registry.Table:
// every call looks its method up without a lock, and past floorMethods a
// new method takes the place of one not used lately.
func newFloors() *registry.Table[string, floor] {
	t := &registry.Table[string, floor]{}
	t.Init(floorMethods,
		func(string) *floor { return &floor{} },
		// A dropped floor is learned again from the next few successes.
		func(*floor) registry.Worth { return registry.Little })
	return t
}

// floor is the fastest successful calls of one method, by period. Times
// are the clock's UnixNano. The atomics let a call read the floor, and
// record a success that changes nothing, without taking the lock.
type floor struct {
	// value is the floor until the current period ends at until.
	value, until atomic.Int64
	// settled is the current period's fastest once it has floorAnswers
	// successes (0 before): a success no faster changes nothing.
	settled atomic.Int64

	mu        sync.Mutex
	cur, prev fastest
}

type fastest struct {
	d int64
	n int
}

// at returns the floor at now: the fastest success of the periods that
// saw enough of them, or 0 when none did.
func (f *floor) at(now int64) time.Duration {
	if now < f.until.Load() {
		return time.Duration(f.value.Load())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate(now)
	return time.Duration(f.value.Load())
}

// times says whether to time a call sent at start that succeeded, which
// costs a clock read: every one until the period has enough, then about
// one in eight, picked by the low bits of start. The floor is then the
// fastest of fewer calls, a little higher, by about the gap between a
// method's fastest calls.
func (f *floor) times(start int64) bool {
	return f.settled.Load() == 0 || start&7 == 0
}

// success records a successful call that took d and ended at now.
func (f *floor) success(now int64, d time.Duration) {
	if s := f.settled.Load(); s != 0 && int64(d) >= s && now < f.until.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate(now)
	if f.cur.n == 0 || int64(d) < f.cur.d {
		f.cur.d = max(int64(d), 1)
	}
	f.cur.n++
	f.publish()
}

// rotate starts a new period when the current one is over. Called with
// mu held.
func (f *floor) rotate(now int64) {
	end := f.until.Load()
	if now < end {
		return
	}
	if now < end+floorPeriod {
		f.prev = f.cur
	} else {
		f.prev = fastest{}
	}
	f.cur = fastest{}
	f.until.Store(now + floorPeriod)
	f.publish()
}

// publish updates the atomics from cur and prev. Called with mu held.
func (f *floor) publish() {
	var v, s int64
	if f.cur.n >= floorAnswers {
		v, s = f.cur.d, f.cur.d
	}
	if f.prev.n >= floorAnswers && (v == 0 || f.prev.d < v) {
		v = f.prev.d
	}
	f.value.Store(v)
	f.settled.Store(s)
}
