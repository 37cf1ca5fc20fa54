package outlier

import (
	"sync"
	"time"

	"google.golang.org/grpc/balancer"

	"github.com/failsoft/failsoft/interceptors/internal/pushback"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// picker asks the child's picker for a SubConn, asks again while the one
// it got belongs to an ejected endpoint, and hears every call's outcome.
type picker struct {
	child balancer.Picker
	d     *detector
	n     int // endpoints when the child's picker came
}

// Pick returns the child's pick, skipping ejected endpoints. It asks the
// child at most once more than there are endpoints: a round-robin child
// comes round to an endpoint in rotation by then. When every answer was
// ejected, the last one is used: a call to an ejected backend is better
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
		if e.ejected(now) && tries < p.n {
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
