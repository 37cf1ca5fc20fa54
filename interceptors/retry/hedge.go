package retry

import (
	"context"
	"errors"
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
	hedge   bool
	paid    bool // a retry that took a budget token
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

// hedger runs one hedged call: it sends the first attempt, then another
// after each hedge delay while fewer than c.hedges are in flight, and a
// retry after the retry policy's backoff (or the server's pushback) when
// an attempt fails with a retryable code; hedges and retries together are
// at most c.max attempts. The first success wins and the others are
// cancelled and waited for; each attempt decodes into its own reply and
// only the winner's is copied into the caller's.
//
// Only run's goroutine touches the hedger's fields; attempts report on
// results.
type hedger struct {
	c       call
	req     any
	reply   proto.Message
	cc      *grpc.ClientConn
	next    chain.UnaryNext
	base    []grpc.CallOption // the caller's options but header, trailer and peer
	user    userAddrs
	ctx     context.Context // the attempts' parent: cancelled when the call ends
	cancel  context.CancelFunc
	results chan *hedgeResult
	lat     *latency // nil: a fixed delay
	delay   time.Duration

	inflight int
	timer    clock.Timer // nil: nothing due
	due      string      // what the timer is for: "hedge", "policy" or "pushback"
	wait     time.Duration
	stop     string       // why no further attempt is sent; "" while one may be
	last     *hedgeResult // the last failed attempt
}

func newHedger(c *call, req any, reply proto.Message, cc *grpc.ClientConn, next chain.UnaryNext, opts []grpc.CallOption) *hedger {
	h := &hedger{c: *c, req: req, reply: reply, cc: cc, next: next, delay: c.p.Hedge.Delay}
	h.base, h.user = hedgeOptions(opts)
	h.results = make(chan *hedgeResult, c.max)
	if q := c.p.Hedge.Quantile; q > 0 {
		h.lat = c.ic.latencyFor(c.method, q)
		if d, ok := h.lat.get(); ok {
			h.delay = d
		}
	}
	return h
}

// run sends the attempts and returns the call's result.
func (h *hedger) run() error {
	c := &h.c
	parent := c.ctx
	if !c.pending.IsZero() {
		// Hedges race within the call's deadline: set it once for all.
		var cancel context.CancelFunc
		parent, cancel = context.WithDeadline(parent, c.pending)
		defer cancel()
		c.ctx, c.pending = parent, time.Time{}
	}
	// Every attempt's context derives from h.ctx, which ends them all
	// when the call has its result.
	h.ctx, h.cancel = context.WithCancel(parent)
	c.ctx = h.ctx
	defer h.cancel()
	defer h.disarm()

	h.launch(false, 0, "", false)
	h.armHedge()
	done := parent.Done()
	for {
		select {
		case r := <-h.results:
			h.ended(r)
			if r.err == nil {
				return h.won(r)
			}
			if err, end := h.failed(r); end {
				return err
			}
		case <-h.timerC():
			h.timer = nil
			h.fire()
		case <-done:
			done = nil
			h.disarm()
			if h.inflight == 0 {
				return c.interrupted(h.last.err)
			}
			h.stop = "deadline"
			if errors.Is(parent.Err(), context.Canceled) {
				h.stop = "canceled"
			}
			// The attempts in flight end with the context's error, which
			// is returned as a plain call would.
		}
		if h.inflight == 0 && h.timer == nil {
			return h.exhausted()
		}
	}
}

// launch sends attempt c.n+1, a hedge or a retry after wait; paid says
// that it is a retry that took a budget token.
func (h *hedger) launch(hedge bool, wait time.Duration, reason string, paid bool) {
	c := &h.c
	h.inflight++
	next := h.next
	next.MayRetry = c.begin(c.ic.clock.Now())
	ctx := c.attemptContext(hedge, wait, reason)
	r := &hedgeResult{n: c.n, hedge: hedge, paid: paid, ctx: ctx, reply: h.reply.ProtoReflect().New().Interface()}
	opts := append(h.base[:len(h.base):len(h.base)], grpc.Header(&r.header), grpc.Trailer(&r.trailer), grpc.Peer(&r.peer))
	if c.ic.obs != nil {
		if hedge {
			c.event(ctx, observe.Event{Kind: observe.Hedge, Attempt: c.n, Hedge: true, Duration: wait})
		}
		c.event(ctx, observe.Event{Kind: observe.AttemptStart, Attempt: c.n, Hedge: hedge})
	}
	start := c.ic.clock.Now()
	go func() {
		r.err = next.Invoke(ctx, c.method, h.req, r.reply, h.cc, opts...)
		r.dur = c.ic.clock.Now().Sub(start)
		h.results <- r
	}()
}

// ended accounts for an attempt's end.
func (h *hedger) ended(r *hedgeResult) {
	h.inflight--
	if h.c.ic.obs != nil {
		h.c.event(r.ctx, observe.Event{Kind: observe.AttemptEnd, Attempt: r.n, Hedge: r.hedge, Err: r.err, Duration: r.dur})
	}
}

// won ends the call with r's reply, header, trailer and peer.
func (h *hedger) won(r *hedgeResult) error {
	h.finish()
	if r.paid {
		// A retry that worked gets its token back.
		h.c.b.refund(h.c.ic.clock.Now())
	}
	proto.Reset(h.reply)
	proto.Merge(h.reply, r.reply)
	h.user.set(r)
	if h.lat != nil {
		h.lat.add(r.dur)
	}
	return nil
}

// failed handles an attempt that failed: it ends the call when the error
// is final, and otherwise schedules a retry.
func (h *hedger) failed(r *hedgeResult) (error, bool) {
	c := &h.c
	h.last = r
	if why, ok := c.retryable(r.err, false); !ok {
		// A fatal status ends the call at once, as in gRFC A6.
		h.finish()
		h.user.set(r)
		return c.stopped(why, r.err), true
	}
	if h.stop != "" {
		return nil, false
	}
	pb := serverPushback(r.trailer, r.err)
	switch {
	case pb.Present && !pb.Allow:
		h.stop = "pushback"
		h.disarm()
	case c.n >= c.max:
		h.stop = "attempts"
	case h.timer != nil && h.due == "hedge" && h.inflight > 0:
		// Attempts still race and a hedge is due: it takes the failed
		// attempt's place.
	default:
		wait, reason := c.backoff(pb)
		h.arm(wait, reason)
		if c.ic.obs != nil {
			c.event(c.ctx, observe.Event{Kind: observe.Backoff, Attempt: c.n + 1, Duration: wait, Reason: reason})
		}
	}
	return nil, false
}

// fire sends what the timer was due for, if the deadline and the budget
// allow, and arms the next hedge.
func (h *hedger) fire() {
	c := &h.c
	if h.stop != "" || c.n >= c.max {
		return
	}
	if !c.deadline.IsZero() && c.deadline.Sub(c.ic.clock.Now()) <= max(c.p.MinBudget, 0) {
		h.stop = "deadline"
		return
	}
	hedge := h.due == "hedge"
	if !c.spend(hedge) {
		h.stop = "budget"
		return
	}
	h.launch(hedge, h.wait, h.due, c.paid)
	c.paid = false
	h.armHedge()
}

// armHedge arms the next hedge, when one may still be sent.
func (h *hedger) armHedge() {
	if h.stop == "" && h.c.n < h.c.max && h.inflight < h.c.hedges {
		h.arm(h.delay, "hedge")
	}
}

func (h *hedger) arm(d time.Duration, due string) {
	h.disarm()
	h.timer, h.due, h.wait = h.c.ic.clock.NewTimer(d), due, d
}

func (h *hedger) disarm() {
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
}

func (h *hedger) timerC() <-chan time.Time {
	if h.timer == nil {
		return nil
	}
	return h.timer.C()
}

// finish cancels the attempts still in flight and waits for them.
func (h *hedger) finish() {
	h.disarm()
	h.cancel()
	for h.inflight > 0 {
		h.ended(<-h.results)
	}
}

// exhausted returns the error of a call whose attempts all failed, with
// the last attempt's header, trailer and peer.
func (h *hedger) exhausted() error {
	c := &h.c
	r := h.last
	h.user.set(r)
	switch h.stop {
	case "budget":
		return c.stopped(h.stop, newStopError(h.stop, c.n, c.target, r.err, ""))
	case "deadline":
		if c.ctx.Err() != nil {
			return c.stopped(h.stop, r.err)
		}
		return c.stopped(h.stop, newStopError(h.stop, c.n, c.target, r.err, "no time left for another attempt"))
	case "canceled":
		return c.stopped(h.stop, r.err)
	case "":
		h.stop = "attempts"
	}
	return c.stopped(h.stop, r.err)
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
