package outlier

import (
	"sync"
	"time"

	"google.golang.org/grpc/balancer"

	"github.com/failsoft/failsoft/interceptors/internal/pushback"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// picker asks the child's picker for a SubConn, asks again while the one
// it got belongs to an ejected endpoint, and hears every call's outcome.
type picker struct {
	child balancer.Picker
	d     *detector
	n     int // endpoints when the child's picker came
}

// Pick returns the child's pick, skipping ejected endpoints and, for a
// retry or a hedge, endpoints whose latest call failed: the attempt before
// most likely failed there, and a child that picks at random
// (least_request) would otherwise send a retry back to the backend that
// just failed it, before the detector has seen enough to eject it. It asks
// the child at most once more than there are endpoints: a round-robin
// child comes round to every endpoint by then. When every answer was
// skipped, the last one is used: a call to an unwell backend is better
// than none.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	now := p.d.clock.Now()
	for tries := 0; ; tries++ {
		res, err := p.child.Pick(info)
		if err != nil {
			return res, err
		}
		sc, ok := res.SubConn.(*subConn)
		if !ok {
			return res, nil // not one the policy made
		}
		res.SubConn = sc.SubConn
		e := sc.e
		if e == nil {
			return res, nil // not an endpoint the detector knows
		}
		if tries < p.n && (e.ejected(now) || e.lastFailed.Load() && isRetry(info)) {
			// The child counts its picks (least_request does); nothing
			// was sent.
			if res.Done != nil {
				res.Done(balancer.DoneInfo{})
			}
			continue
		}
		c, _ := callPool.Get().(*call)
		if c == nil {
			c = &call{}
			c.done = c.finish
		}
		c.d, c.e, c.start, c.childDone = p.d, e, now, res.Done
		res.Done = c.done
		return res, nil
	}
}

// isRetry reports whether the pick is for an attempt after a call's first
// (a retry or a hedge), as the retry layer marks its attempts.
func isRetry(info balancer.PickInfo) bool {
	return info.Ctx != nil && observe.AttemptFrom(info.Ctx).N > 1
}

// call is what a picked call's Done needs. Calls are pooled, each with its
// Done bound once, so that a call costs no allocation here (a loopback
// call's allocations are pinned in bench/harness); grpc-go calls Done once
// per pick it uses.
type call struct {
	d         *detector
	e         *endpoint
	start     time.Time
	childDone func(balancer.DoneInfo)
	done      func(balancer.DoneInfo) // c.finish
}

var callPool sync.Pool

// finish counts the call's outcome and passes it on to the child's Done.
func (c *call) finish(info balancer.DoneInfo) {
	d, e, start, childDone := c.d, c.e, c.start, c.childDone
	c.d, c.e, c.childDone = nil, nil, nil
	callPool.Put(c)
	now := d.clock.Now()
	d.record(e, classify(info), now, now.Sub(start))
	if childDone != nil {
		childDone(info)
	}
}

// classify says what a call's end means for its endpoint's health, as
// the other layers read outcomes: server pushback (package
// internal/pushback; valid or not, it comes from a live server) marks a
// live, overloaded backend whatever the code.
func classify(info balancer.DoneInfo) outcome.Class {
	class := outcome.Default.Classify(info.Err)
	if class == outcome.Failure && pushback.Read(info.Trailer, info.Err).Present {
		return outcome.Overload
	}
	return class
}
