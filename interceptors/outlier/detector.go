package outlier

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/grpclog"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

var logger = grpclog.Component(Name)

// detector holds the health of a connection's endpoints and decides which
// are ejected. Pickers read an endpoint's ejection without locking; every
// other field is guarded by mu.
type detector struct {
	clock clock.Clock

	mu        sync.Mutex
	cfg       Config
	endpoints map[string]*endpoint
	nextEval  time.Time
}

// endpoint is one backend's record.
type endpoint struct {
	key string
	// ejectedUntil is the Unix time in nanoseconds until which the
	// endpoint is out of rotation; 0 when it is in.
	ejectedUntil atomic.Int64
	// lastFailed is set while the endpoint's latest counted call failed
	// or was shed as overload, and cleared by a success; written by record
	// alone. Pickers read it without locking: a retry's pick moves on from
	// such an endpoint, as the attempt that failed most likely failed
	// there.
	lastFailed atomic.Bool
	// removed is set when the resolver no longer lists the endpoint.
	removed bool

	consecutive int // failures in a row
	calls       int // calls that succeeded or failed this interval
	failures    int // of which failed
	// prevCalls and prevFailures are the previous interval's; with this
	// interval's they are the window an endpoint is compared with its
	// siblings over.
	prevCalls    int
	prevFailures int
	// probation is set on readmission: the next outcome decides, a
	// failure ejecting the endpoint again at once.
	probation bool
	// ejections is the multiplier of the next ejection's length; it falls
	// by one for each BaseEjectionTime the endpoint stays in rotation.
	ejections int
	calmSince time.Time

	latency [latencySamples]time.Duration // recent successful calls, a ring
	samples int                           // how many of latency are filled
	next    int                           // where the next one goes
}

// window returns the calls and failures of this interval and the last.
func (e *endpoint) window() (calls, failures int) {
	return e.calls + e.prevCalls, e.failures + e.prevFailures
}

func newDetector(cfg Config, c clock.Clock) *detector {
	return &detector{clock: c, cfg: cfg, endpoints: map[string]*endpoint{}}
}

// ejected reports whether the endpoint is out of rotation at now.
func (e *endpoint) ejected(now time.Time) bool {
	until := e.ejectedUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// update sets the configuration and the endpoints, keeping the record of
// those that stay.
func (d *detector) update(cfg Config, keys []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg = cfg
	kept := make(map[string]*endpoint, len(keys))
	for _, k := range keys {
		e := d.endpoints[k]
		if e == nil {
			e = &endpoint{key: k}
		}
		kept[k] = e
	}
	for k, e := range d.endpoints {
		if kept[k] != e {
			e.removed = true
		}
	}
	d.endpoints = kept
}

// size returns the number of endpoints.
func (d *detector) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.endpoints)
}

// endpoint returns the record of key, or nil when key is not an endpoint.
func (d *detector) endpoint(key string) *endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.endpoints[key]
}

// record counts the outcome of a call that e served in latency, ending
// at now, and ejects endpoints as the rules say.
func (d *detector) record(e *endpoint, class outcome.Class, now time.Time, latency time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.removed {
		return
	}
	if !now.Before(d.nextEval) {
		// The interval is over: judge it before counting into the next.
		d.evaluate(now)
		d.nextEval = now.Add(d.cfg.Interval)
	}
	d.readmit(e, now)
	if e.ejected(now) {
		// Picked before the ejection (or the only choice left): it says
		// nothing new.
		return
	}
	switch class {
	case outcome.Success:
		e.lastFailed.Store(false)
		e.consecutive = 0
		e.calls++
		e.probation = false
		e.latency[e.next] = latency
		e.next = (e.next + 1) % latencySamples
		e.samples = min(e.samples+1, latencySamples)
	case outcome.Overload:
		e.lastFailed.Store(true)
	case outcome.Failure:
		e.lastFailed.Store(true)
		e.consecutive++
		e.calls++
		e.failures++
		if (e.probation || (d.cfg.ConsecutiveFailures > 0 && e.consecutive >= d.cfg.ConsecutiveFailures)) &&
			d.siblingsDoBetter(e, max(1, d.cfg.ConsecutiveFailures), now) {
			d.eject(e, now, "consecutive failures")
		}
		e.probation = false
	}
}

// readmit puts e back into rotation once its ejection is over.
func (d *detector) readmit(e *endpoint, now time.Time) {
	until := e.ejectedUntil.Load()
	if until == 0 || now.UnixNano() < until {
		return
	}
	e.ejectedUntil.Store(0)
	// The record that got it ejected stays as its previous interval, so
	// that a failure on probation is compared with the siblings over more
	// than one call.
	e.prevCalls, e.prevFailures = e.window()
	e.consecutive, e.calls, e.failures = 0, 0, 0
	e.samples, e.next = 0, 0
	e.probation = true
	e.calmSince = now
	logger.Infof("endpoint %s readmitted", e.key)
}

// siblingsDoBetter reports whether most of e's siblings that are in
// rotation and made at least minCalls calls over their window fail at most
// half as often as e does over its own. A backend that fails while its
// siblings do too is part of a fleet that fails (overload shed as
// UNAVAILABLE, a bad dependency): ejecting it would only move its load
// onto them. When most of the fleet fails, the healthy few could not take
// the failing ones' share either.
func (d *detector) siblingsDoBetter(e *endpoint, minCalls int, now time.Time) bool {
	calls, failures := e.window()
	better, judged := 0, 0
	for _, s := range d.endpoints {
		if s == e || s.ejected(now) {
			continue
		}
		sc, sf := s.window()
		if sc < minCalls {
			continue
		}
		judged++
		// sf/sc <= failures/calls / 2, without division.
		if 2*sf*calls <= failures*sc {
			better++
		}
	}
	return 2*better > judged
}

// maxEjected is how many of n endpoints may be out of rotation at once.
func (d *detector) maxEjected(n int) int {
	if d.cfg.MaxEjectionPercent == 0 || n < 2 {
		return 0
	}
	return min(n-1, max(1, n*d.cfg.MaxEjectionPercent/100))
}

// eject takes e out of rotation, unless as many endpoints as may be are
// already out. Its counts start afresh when it is readmitted.
func (d *detector) eject(e *endpoint, now time.Time, why string) {
	ejected := 0
	for _, o := range d.endpoints {
		if o.ejected(now) {
			ejected++
		}
	}
	if ejected >= d.maxEjected(len(d.endpoints)) {
		return
	}
	e.ejections++
	length := min(d.cfg.BaseEjectionTime*time.Duration(e.ejections), max(d.cfg.BaseEjectionTime, d.cfg.MaxEjectionTime))
	e.ejectedUntil.Store(now.Add(length).UnixNano())
	e.probation = false
	logger.Infof("endpoint %s ejected for %v: %s", e.key, length, why)
}

// evaluate runs the interval's rules: readmissions and the multiplier's
// decay, then failure-rate and latency ejection, worst endpoints first.
func (d *detector) evaluate(now time.Time) {
	type candidate struct {
		e     *endpoint
		score float64
	}
	var rate, slow []candidate
	var medians []time.Duration
	var eligible []*endpoint
	for _, e := range d.endpoints {
		d.readmit(e, now)
		if e.ejected(now) {
			continue
		}
		if e.ejections > 0 && now.Sub(e.calmSince) >= d.cfg.BaseEjectionTime {
			e.ejections--
			e.calmSince = now
		}
		if d.cfg.FailureThreshold > 0 && e.calls >= d.cfg.FailureMinimumCalls &&
			e.failures*100 >= d.cfg.FailureThreshold*e.calls {
			rate = append(rate, candidate{e, float64(e.failures) / float64(e.calls)})
		}
		if d.cfg.LatencyRatio > 0 && e.samples >= d.cfg.LatencyMinimumCalls {
			eligible = append(eligible, e)
			medians = append(medians, median(e.latency[:e.samples]))
		}
	}
	if len(eligible) >= 2 {
		sorted := slices.Clone(medians)
		slices.Sort(sorted)
		for i, e := range eligible {
			m := medians[i]
			siblings := medianWithout(sorted, slices.Index(sorted, m))
			if m >= d.cfg.MinimumLatency && float64(m) >= d.cfg.LatencyRatio*float64(siblings) {
				slow = append(slow, candidate{e, float64(m) / float64(max(siblings, 1))})
			}
		}
	}
	for _, cs := range []struct {
		list []candidate
		why  string
	}{{rate, "failure rate"}, {slow, "latency"}} {
		slices.SortFunc(cs.list, func(a, b candidate) int {
			switch {
			case a.score > b.score:
				return -1
			case a.score < b.score:
				return 1
			}
			return 0
		})
		for _, c := range cs.list {
			if c.e.ejected(now) || (cs.why == "failure rate" && !d.siblingsDoBetter(c.e, d.cfg.FailureMinimumCalls, now)) {
				continue
			}
			d.eject(c.e, now, cs.why)
		}
	}
	// The interval's counts become the previous ones, unless no call
	// ended for a whole interval: then they are too old to compare with.
	fresh := now.Sub(d.nextEval) < d.cfg.Interval
	for _, e := range d.endpoints {
		if e.ejected(now) || e.probation {
			continue // keeps the record that got it ejected
		}
		e.prevCalls, e.prevFailures = 0, 0
		if fresh {
			e.prevCalls, e.prevFailures = e.calls, e.failures
		}
		e.calls, e.failures = 0, 0
	}
}

// median returns the median of samples, which it leaves as they are.
func median(samples []time.Duration) time.Duration {
	var buf [latencySamples]time.Duration
	s := buf[:copy(buf[:], samples)]
	slices.Sort(s)
	return middle(len(s), func(i int) time.Duration { return s[i] })
}

// medianWithout returns the median of sorted without its element at skip.
func medianWithout(sorted []time.Duration, skip int) time.Duration {
	return middle(len(sorted)-1, func(i int) time.Duration {
		if i >= skip {
			i++
		}
		return sorted[i]
	})
}

// middle returns the median of n sorted values read through at.
func middle(n int, at func(int) time.Duration) time.Duration {
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return at(n / 2)
	}
	return (at(n/2-1) + at(n/2)) / 2
}
