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
type ring struct {
	n       uint64
	buckets []bucket
	// lastMiss is one more than the index of the latest bucket that
	// counted a request without its accept (0: none yet). While no such
	// bucket is in the window, requests equal accepts and the throttle's
	// probability is 0 for any K >= 1: admit need not sum the buckets.
	lastMiss atomic.Uint64
	// lastAnswer is one more than the start (see Interceptor.since) of the
	// latest call the target did the work of, a success or the caller's
	// own error (0: none yet).
	lastAnswer atomic.Int64
}

// A bucket counts requests and, of those, misses (requests not accepted),
// rather than accepts: the common call, an accepted one, then moves one
// counter, not two.
type bucket struct {
	requests, misses atomic.Uint64
}

const countMask = 1<<32 - 1

func newRing(buckets int) *ring {
	return &ring{n: uint64(buckets), buckets: make([]bucket, buckets)}
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

// answered notes that the target did the work of a call sent at at.
func (r *ring) answered(at time.Duration) {
	v := int64(at) + 1
	for a := r.lastAnswer.Load(); a < v && !r.lastAnswer.CompareAndSwap(a, v); a = r.lastAnswer.Load() {
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
	m := r.lastMiss.Load()
	return m == 0 || (m <= idx+1 && idx+1-m >= r.n)
}

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
