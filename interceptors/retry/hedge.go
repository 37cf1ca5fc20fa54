package retry

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/internal/chain"
)

// hedgeResult is the end of one hedged attempt.
type hedgeResult struct {
	n       int
	ctx     context.Context
	reply   proto.Message
	err     error
	header  metadata.MD
	trailer metadata.MD
	peer    peer.Peer
	dur     time.Duration
}

// userAddrs are the caller's header, trailer and peer call options. Hedged
// attempts run at once, so each gets its own and only the winner's are
// copied to the caller's.
type userAddrs struct {
	header, trailer *metadata.MD
	peer            *peer.Peer
}

// hedgeOptions returns opts without the caller's header, trailer and peer
// options, and those options' addresses.
func hedgeOptions(opts []grpc.CallOption) ([]grpc.CallOption, userAddrs) {
	var u userAddrs
	out := make([]grpc.CallOption, 0, len(opts)+3)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			u.header = o.HeaderAddr
		case *grpc.HeaderCallOption:
			u.header = o.HeaderAddr
		case grpc.TrailerCallOption:
			u.trailer = o.TrailerAddr
		case *grpc.TrailerCallOption:
			u.trailer = o.TrailerAddr
		case grpc.PeerCallOption:
			u.peer = o.PeerAddr
		case *grpc.PeerCallOption:
			u.peer = o.PeerAddr
		default:
			out = append(out, o)
		}
	}
	return out, u
}

func (u *userAddrs) set(r *hedgeResult) {
	if u.header != nil {
		*u.header = r.header
	}
	if u.trailer != nil {
		*u.trailer = r.trailer
	}
	if u.peer != nil {
		*u.peer = r.peer
	}
}

// hedge sends the call, then another attempt after each hedge delay (or at
// once when an attempt fails with a retryable code), up to c.max attempts.
// The first success wins and the others are cancelled; each attempt
// decodes into its own reply and only the winner's is copied into reply.
func (ic *Interceptor) hedge(c *call, req any, reply proto.Message, cc *grpc.ClientConn, next chain.UnaryNext, opts []grpc.CallOption) error {
	if !c.deadline.IsZero() {
		// Hedges share the call's deadline: set it on the call's context.
		var cancel context.CancelFunc
		c.ctx, cancel = context.WithDeadline(c.ctx, c.deadline)
		defer cancel()
		c.deadline = time.Time{}
	}
	hctx, cancelAll := context.WithCancel(c.ctx)
	defer cancelAll()
	base, user := hedgeOptions(opts)
	results := make(chan *hedgeResult, c.max)
	var lat *latency
	delay := c.p.Hedge.Delay
	if q := c.p.Hedge.Quantile; q > 0 {
		lat = ic.latencyFor(c.method, q)
		if d, ok := lat.get(); ok {
			delay = d
		}
	}

	sent, inflight := 0, 0
	launch := func(wait time.Duration) {
		sent++
		inflight++
		c.n = sent
		n := sent
		ctx := hctx
		if n > 1 {
			ctx = metadata.AppendToOutgoingContext(ctx, AttemptMetadata, attemptString(n))
		}
		inner := next
		if n > 1 || ic.obs != nil {
			ctx = observe.WithAttempt(ctx, observe.Attempt{N: n, Hedge: n > 1, Backoff: wait, BackoffReason: "hedge"})
		}
		r := &hedgeResult{n: n, ctx: ctx, reply: reply.ProtoReflect().New().Interface()}
		aopts := append(base[:len(base):len(base)], grpc.Header(&r.header), grpc.Trailer(&r.trailer), grpc.Peer(&r.peer))
		if ic.obs != nil {
			if n > 1 {
				c.event(ctx, observe.Event{Kind: observe.Hedge, Attempt: n, Hedge: true, Duration: wait})
			}
			c.event(ctx, observe.Event{Kind: observe.AttemptStart, Attempt: n, Hedge: n > 1})
		}
		start := ic.clock.Now()
		go func() {
			r.err = inner.Invoke(ctx, c.method, req, r.reply, cc, aopts...)
			r.dur = ic.clock.Now().Sub(start)
			results <- r
		}()
	}
	ended := func(r *hedgeResult) {
		inflight--
		if ic.obs != nil {
			c.event(r.ctx, observe.Event{Kind: observe.AttemptEnd, Attempt: r.n, Hedge: r.n > 1, Err: r.err, Duration: r.dur})
		}
	}
	finish := func() {
		cancelAll()
		for inflight > 0 {
			ended(<-results)
		}
	}

	var timer clock.Timer
	var timerC <-chan time.Time
	var waited time.Duration
	arm := func(d time.Duration) {
		if timer != nil {
			timer.Stop()
		}
		timer, timerC, waited = ic.clock.NewTimer(d), nil, d
		timerC = timer.C()
	}
	disarm := func() {
		if timer != nil {
			timer.Stop()
		}
		timer, timerC = nil, nil
	}
	defer disarm()

	var last error
	var lastRes *hedgeResult
	stop := "" // why no further hedges are sent
	// another sends the next hedge if the deadline and the budget allow.
	another := func(wait time.Duration) {
		if stop != "" || sent >= c.max {
			return
		}
		if dl, ok := c.ctx.Deadline(); ok && dl.Sub(ic.clock.Now()) <= max(c.p.MinBudget, 0) {
			stop = "deadline"
			return
		}
		if !c.spend(true) {
			stop = "budget"
			return
		}
		launch(wait)
	}
	// failed returns the error of a call whose attempts all failed.
	failed := func(err error) error {
		switch stop {
		case "budget":
			return c.stopped(stop, newStopError(stop, sent, c.target, err, ""))
		case "deadline":
			return c.stopped(stop, newStopError(stop, sent, c.target, err, "no time left for another hedge"))
		case "":
			stop = "attempts"
		}
		return c.stopped(stop, err)
	}

	launch(0)
	if c.max > 1 {
		arm(delay)
	}
	doneC := c.ctx.Done()
	for {
		select {
		case r := <-results:
			ended(r)
			if r.err == nil {
				disarm()
				finish()
				proto.Reset(reply)
				proto.Merge(reply, r.reply)
				user.set(r)
				if lat != nil {
					lat.add(r.dur)
				}
				return nil
			}
			last, lastRes = r.err, r
			if why, ok := c.retryable(r.err, false); !ok {
				// A fatal status ends the call at once, as in gRFC A6.
				disarm()
				finish()
				user.set(r)
				return c.stopped(why, r.err)
			}
			pb := serverPushback(r.trailer, r.err)
			switch {
			case pb.present && !pb.allow:
				stop = "pushback"
				disarm()
			case sent >= c.max || stop != "":
			case pb.allow:
				arm(pb.delay)
				if ic.obs != nil {
					c.event(c.ctx, observe.Event{Kind: observe.Backoff, Attempt: sent + 1, Duration: pb.delay, Reason: "pushback"})
				}
			default:
				// A retryable failure sends the next hedge at once.
				another(0)
				if sent < c.max && stop == "" {
					arm(delay)
				} else {
					disarm()
				}
			}
			if inflight == 0 && timerC == nil {
				user.set(r)
				return failed(r.err)
			}
		case <-timerC:
			timer, timerC = nil, nil
			another(waited)
			if sent < c.max && stop == "" {
				arm(delay)
			}
			if inflight == 0 && timerC == nil {
				// Reached when a hedge due after a server's pushback could
				// not be sent.
				user.set(lastRes)
				return failed(last)
			}
		case <-doneC:
			doneC = nil
			disarm()
			if inflight == 0 {
				if lastRes != nil {
					user.set(lastRes)
				}
				return c.interrupted(last)
			}
			// The attempts in flight end with the context's error, which
			// the results case returns as a plain call would.
		}
	}
}

func (ic *Interceptor) latencyFor(method string, q float64) *latency {
	if l, ok := ic.latency.Load(method); ok {
		return l.(*latency)
	}
	l, _ := ic.latency.LoadOrStore(method, &latency{q: q})
	return l.(*latency)
}

// latency keeps a method's recent successful latencies, to set the hedge
// delay at a quantile of them. It holds the last latencySamples samples and
// recomputes the quantile every latencyEvery samples; until it has
// latencyEvery samples, the policy's fixed delay is used.
type latency struct {
	q       float64
	count   atomic.Uint64
	samples [latencySamples]atomic.Int64
	cached  atomic.Int64
}

const (
	latencySamples = 256
	latencyEvery   = 32
)

func (l *latency) add(d time.Duration) {
	i := l.count.Add(1) - 1
	l.samples[i%latencySamples].Store(int64(d))
	if (i+1)%latencyEvery == 0 {
		l.recompute(min(i+1, latencySamples))
	}
}

func (l *latency) recompute(n uint64) {
	var buf [latencySamples]int64
	s := buf[:n]
	for i := range s {
		s[i] = l.samples[i].Load()
	}
	slices.Sort(s)
	idx := int(math.Ceil(l.q*float64(n))) - 1
	idx = max(0, min(idx, int(n)-1))
	l.cached.Store(max(s[idx], 1))
}

// get returns the current quantile, once there are enough samples.
func (l *latency) get() (time.Duration, bool) {
	v := l.cached.Load()
	return time.Duration(v), v > 0
}
