package throttle

import (
	"sync/atomic"
	"time"
)

// ring counts one target's requests and accepts over the window, in n
// buckets of equal width indexed by the time since the Interceptor was
// built (see Interceptor.index).
//
// Each counter is one 64-bit word that holds the bucket's epoch (the low
// 32 bits of its index) in its high half and the count in its low half, so
// a bucket is moved to a new epoch and counted in by one compare-and-swap:
// no lock, and no increment lost to a concurrent reset. Epochs compare
// modulo 2^32; a bucket left untouched for 2^32 bucket widths (136 years
// with the default 12 s buckets, 49 days with the 1 ms minimum) could be
// taken for a live one, which at worst counts stale calls for one window.
//
// Refusals are of two kinds. A firm one is the target's own word that it
// is overloaded (RESOURCE_EXHAUSTED, pushback), counted in the buckets with
// the accepted requests. A presumed one is counted in soft: a failure
// taken for a refusal only because the target still answered other calls,
// or a local rejection, which the throttle's own probability caused. The
// presumption is wrong for a target that went down, so presumed refusals
// are forgotten once the target is seen dead (a failure of a call sent
// answeringWithin after its last answer) and when it heals (its first
// answer after that, or after answeringWithin in which calls only failed):
// a healed target is then throttled only for firm refusals and for the
// failures it makes since.
type ring struct {
	n       uint64
	buckets []bucket
	// soft counts presumed refusals by bucket, each a request without its
	// accept, as bucket.requests does.
	soft []atomic.Uint64
	// lastMiss and lastSoft are one more than the index of the latest
	// bucket that counted a firm or a presumed refusal (0: none yet, or
	// forgotten). While neither is in the window, requests equal accepts
	// and the throttle's probability is 0 for any K >= 1: admit need not
	// sum the buckets.
	lastMiss, lastSoft atomic.Uint64
	// lastAnswer is one more than the start (see Interceptor.since) of the
	// latest call the target did the work of, a success or the caller's
	// own error (0: none yet).
	lastAnswer atomic.Int64
	// forgotAt is one more than the start of the call that made the ring
	// forget its presumed refusals (0: never). A failure of a call sent
	// up to then is not presumed a refusal: it belongs to the stretch
	// forgotten.
	forgotAt atomic.Int64
	// failing says a call failed since the target last answered.
	failing atomic.Bool
	// dead says the target was seen dead and has not answered since.
	dead atomic.Bool
}

// A bucket counts requests and, of those, misses (requests not accepted),
// rather than accepts: the common call, an accepted one, then moves one
// counter, not two.
type bucket struct {
	requests, misses atomic.Uint64
}

const countMask = 1<<32 - 1

func newRing(buckets int) *ring {
	return &ring{n: uint64(buckets), buckets: make([]bucket, buckets), soft: make([]atomic.Uint64, buckets)}
}

// add counts one request in the bucket of index idx, and whether the
// target accepted it.
func (r *ring) add(idx uint64, accepted bool) {
	b := &r.buckets[idx%r.n]
	epoch := bump(&b.requests, uint32(idx))
	if !accepted {
		for m := r.lastMiss.Load(); m < idx+1 && !r.lastMiss.CompareAndSwap(m, idx+1); m = r.lastMiss.Load() {
		}
		// In the period the request was counted in, which a late writer
		// finds moved on.
		bump(&b.misses, epoch)
	}
}

// addSoft counts one presumed refusal in the bucket of index idx. The
// count comes before the mark, so that a forget running meanwhile leaves
// at worst a mark without a count, which only costs admit a sum.
func (r *ring) addSoft(idx uint64) {
	bump(&r.soft[idx%r.n], uint32(idx))
	for m := r.lastSoft.Load(); m < idx+1 && !r.lastSoft.CompareAndSwap(m, idx+1); m = r.lastSoft.Load() {
	}
}

// forget drops the presumed refusals, and makes the failures of calls sent
// up to at count as accepts. Called once per death and once per heal.
func (r *ring) forget(at time.Duration) {
	v := int64(at) + 1
	for f := r.forgotAt.Load(); f < v && !r.forgotAt.CompareAndSwap(f, v); f = r.forgotAt.Load() {
	}
	if r.lastSoft.Load() == 0 {
		return
	}
	r.lastSoft.Store(0)
	for i := range r.soft {
		r.soft[i].Store(0)
	}
}

// presumed reports whether a failure of a call sent at at, counted in the
// bucket of index idx, is presumed a refusal: the target answered a call
// sent within answeringWithin of it and was not seen dead since, the
// failure is not from a stretch forgotten, and the window holds
// failureEvidence requests.
func (r *ring) presumed(at time.Duration, idx uint64) bool {
	return r.answering(at) && !r.dead.Load() && int64(at) >= r.forgotAt.Load() && r.evidence(idx)
}

// failed notes a failure of a call sent at at, and reports whether the
// target is dead: it answered no call sent within answeringWithin before
// at. When it dies, its presumed refusals are forgotten.
func (r *ring) failed(at time.Duration) bool {
	if !r.failing.Load() {
		r.failing.Store(true)
	}
	if r.answering(at) {
		return r.dead.Load()
	}
	if !r.dead.Load() && !r.dead.Swap(true) {
		r.forget(at)
	}
	return true
}

// bump counts one in w for the period epoch, or for the newer one w has
// moved on to, and returns the period it counted in.
func bump(w *atomic.Uint64, epoch uint32) uint32 {
	for {
		old := w.Load()
		var next uint64
		at := epoch
		switch e := uint32(old >> 32); {
		case old&countMask == 0:
			// Never counted in (or zero): the bucket is free.
			next = uint64(epoch)<<32 | 1
		case e == epoch:
			if old&countMask == countMask {
				return epoch // saturated
			}
			next = old + 1
		case int32(epoch-e) > 0:
			// The bucket still holds an older period: start it anew.
			next = uint64(epoch)<<32 | 1
		default:
			// A newer period already took the bucket (this goroutine read
			// the clock just before another moved on): count it there.
			if old&countMask == countMask {
				return e
			}
			at, next = e, old+1
		}
		if w.CompareAndSwap(old, next) {
			return at
		}
	}
}

// answeringWithin is how recently a target must have done the work of a call
// for its failures to count as refusals: long enough to hold a call or
// two of a client that calls a few times a second, short enough that an
// outage is counted for a second at most.
const answeringWithin = time.Second

// answered notes that the target did the work of a call sent at at. At a
// heal, what the target was presumed to refuse before is forgotten (again,
// when it was seen dead: failures recorded late, of calls sent before it
// died).
func (r *ring) answered(at time.Duration) {
	v := int64(at) + 1
	a := r.lastAnswer.Load()
	for a < v && !r.lastAnswer.CompareAndSwap(a, v) {
		a = r.lastAnswer.Load()
	}
	// A heal: the first answer of a target seen dead, or the first after
	// a stretch of answeringWithin in which it only failed.
	failed := r.failing.Load() && r.failing.Swap(false)
	healed := r.dead.Load() && r.dead.Swap(false)
	if healed || failed && a < v && (a == 0 || int64(at)-(a-1) >= int64(answeringWithin)) {
		r.forget(at)
	}
}

// answering reports whether the target did the work of a call sent within
// answeringWithin before at.
func (r *ring) answering(at time.Duration) bool {
	a := r.lastAnswer.Load()
	return a != 0 && int64(at)-(a-1) < int64(answeringWithin)
}

// failureEvidence is how many requests the window must hold before a
// failure counts as a refusal: with fewer, a few unlucky failures of a
// flaky target (two of three calls) would make it look overloaded.
const failureEvidence = 20

// evidence reports whether the window ending with index idx holds
// failureEvidence requests.
func (r *ring) evidence(idx uint64) bool {
	req, _ := r.totals(idx)
	return req >= failureEvidence
}

// allAccepted reports whether every request counted in the window ending
// with index idx was accepted, without summing the buckets.
func (r *ring) allAccepted(idx uint64) bool {
	return r.outside(r.lastMiss.Load(), idx) && r.outside(r.lastSoft.Load(), idx)
}

// outside reports whether the bucket marked m (one more than its index, 0
// for none) lies before the window ending with index idx.
func (r *ring) outside(m, idx uint64) bool { return m == 0 || (m <= idx+1 && idx+1-m >= r.n) }

// totals sums the buckets whose period lies in the window ending with
// index idx: the last n periods, idx included.
func (r *ring) totals(idx uint64) (requests, accepts uint64) {
	epoch := uint32(idx)
	var misses uint64
	for i := range r.buckets {
		b := &r.buckets[i]
		if w := b.requests.Load(); uint64(epoch-uint32(w>>32)) < r.n {
			requests += w & countMask
		}
		if w := b.misses.Load(); uint64(epoch-uint32(w>>32)) < r.n {
			misses += w & countMask
		}
		if w := r.soft[i].Load(); uint64(epoch-uint32(w>>32)) < r.n {
			requests += w & countMask
			misses += w & countMask
		}
	}
	// A saturated request count, or a bucket read between its two
	// counters' updates, may show more misses than requests.
	return requests, requests - min(misses, requests)
}

// probability is the SRE book's client-side throttling formula,
// max(0, (requests - k*accepts) / (requests + 1)), capped at limit.
func probability(requests, accepts uint64, k, limit float64) float64 {
	r := float64(requests)
	excess := r - k*float64(accepts)
	if excess <= 0 {
		return 0 // the common case: no division
	}
	return min(excess/(r+1), limit)
}
