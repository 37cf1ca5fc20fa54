package breaker

import (
	"context"
	"io"
	"sort"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/internal/registry"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
)

// Interceptor keeps a registry of circuit breakers, one per target (or
// per target and method), and guards calls with them.
type Interceptor struct {
	cfg     config
	base    time.Time
	system  bool
	clocked bool // the fast path reads the clock (FailuresWithin, time window, slow calls)

	// The breakers: one per target or, with PerMethod, one per target and
	// method. When the registry is full, a closed breaker not used lately
	// makes room; an open one is never dropped.
	reg registry.Registry[breaker]
}

// New returns an Interceptor. With no trip rule given, a breaker opens
// when 80 % of the last 100 calls (at least 20) failed.
func New(opts ...Option) (*Interceptor, error) {
	ic := &Interceptor{cfg: defaultConfig()}
	err := option.Apply(&ic.cfg, opts...)
	if err == nil {
		err = ic.cfg.finish()
	}
	if err != nil {
		return nil, err
	}
	ic.base = ic.cfg.Clock.Now()
	ic.system = ic.cfg.Clock == clock.System()
	ic.clocked = ic.cfg.timeWindow > 0 || ic.cfg.slowThreshold > 0 || ic.cfg.withinN > 0
	ic.reg.Init(ic.cfg.perMethod, ic.cfg.maxTargets,
		func(target, method string) *breaker { return newBreaker(ic, target, method) },
		(*breaker).worth)
	return ic, nil
}

// now returns the clock's offset from the interceptor's creation. The
// system clock is read through the monotonic clock only, which is cheaper.
func (ic *Interceptor) now() int64 {
	if ic.system {
		return int64(time.Since(ic.base))
	}
	return int64(ic.cfg.Clock.Now().Sub(ic.base))
}

func (ic *Interceptor) at(off int64) time.Time { return ic.base.Add(time.Duration(off)) }

// State returns the state of the breaker for target (and method, when
// breakers are kept per method), and false if it does not exist yet.
func (ic *Interceptor) State(target, method string) (State, bool) {
	b := ic.reg.Lookup(target, method)
	if b == nil {
		return Closed, false
	}
	return State(b.sg.Load() & stateMask), true
}

// Snapshots returns the state and counts of every breaker, sorted by
// target and method, for metrics.
func (ic *Interceptor) Snapshots() []Snapshot {
	var out []Snapshot
	for b := range ic.reg.All() {
		out = append(out, b.snapshot())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// call is a call the breaker admitted.
type call struct {
	b     *breaker // nil: the call is not guarded
	tok   uint64
	start int64
	// absorb holds the codes of the failures a retry would absorb: the
	// method's retryable codes when the retry layer said it would retry
	// this attempt (chain.State.MayRetry).
	absorb policy.CodeSet
}

// guard resolves the method's policy and admits the call. It returns a
// non-nil error when the call must fail without being sent.
func (ic *Interceptor) guard(ctx context.Context, target, method string, st *chain.State) (call, error) {
	p, err := st.Resolve(ic.cfg.Resolver, method)
	if err != nil {
		return call{}, err // a *policy.Error: FAILED_PRECONDITION
	}
	if p.SkipBreaker {
		return call{}, nil
	}
	b := ic.reg.Get(target, method)
	tok, rej := b.allow(ctx, method)
	if rej != nil {
		if o := ic.cfg.Observer; o != nil {
			var counts observe.Counts
			if info := b.open.Load(); info != nil {
				counts = info.counts
			}
			o.Observe(ctx, observe.Event{Kind: observe.BreakerRejected, Method: method, Target: target,
				Duration: rej.RetryAfter, Counts: counts, Err: rej})
		}
		return call{}, rej
	}
	c := call{b: b, tok: tok}
	if ic.cfg.slowThreshold > 0 {
		c.start = ic.now()
	}
	if st.MayRetry && !ic.cfg.everyAttempt {
		c.absorb = p.Retry.Codes
	}
	return c, nil
}

// done reports the call's result to its breaker.
func (c *call) done(ctx context.Context, method string, err error) {
	class := c.b.ic.classify(ctx, err)
	absorbed := class == outcome.Failure && c.absorb != 0 && c.absorb.Has(outcome.Code(err))
	c.b.done(ctx, method, c.tok, class, absorbed, c.start)
}

// classify says what an attempt's end on ctx tells of its target. An
// attempt that had a timeout of its own (observe.Attempt.Timeout, which
// the retry layer sets only when a retry can follow) and ended
// DEADLINE_EXCEEDED was cut by the caller's side to try again: the target
// had not answered yet, which says it is slow, not that it failed. It is
// no answer, as a cancelled call is none: it neither counts as a failure
// nor ends a run of them. The attempt that nothing follows runs to the
// call's deadline, and counts.
func (ic *Interceptor) classify(ctx context.Context, err error) outcome.Class {
	class := ic.cfg.classifier.Classify(err)
	if class == outcome.Failure && outcome.Code(err) == codes.DeadlineExceeded && observe.AttemptFrom(ctx).Timeout > 0 {
		return outcome.Ignored
	}
	return class
}

// UnaryClientInterceptor returns the unary client interceptor.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(layer{ic})
}

// layer is the Interceptor as a layer of a folded chain.
type layer struct{ ic *Interceptor }

func init() {
	chain.Register(chain.Breaker, func(ic *Interceptor) chain.Layer { return chain.Both(layer{ic}) })
}

func (l layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	c, err := l.ic.guard(ctx, cc.Target(), method, &next.State)
	if err != nil {
		return err
	}
	if c.b == nil {
		return next.Invoke(ctx, method, req, reply, cc, opts...)
	}
	err = next.Invoke(ctx, method, req, reply, cc, opts...)
	c.done(ctx, method, err)
	return err
}

// StreamClientInterceptor returns the stream client interceptor. A stream
// that fails to open counts as a call; one that opens counts with its
// final status, seen when RecvMsg returns an error (io.EOF is success).
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(layer{ic})
}

func (l layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c, err := l.ic.guard(ctx, cc.Target(), method, &next.State)
	if err != nil {
		return nil, err
	}
	if c.b == nil {
		return next.NewStream(ctx, desc, cc, method, opts...)
	}
	cs, err := next.NewStream(ctx, desc, cc, method, opts...)
	if err != nil {
		c.done(ctx, method, err)
		return nil, err
	}
	// Once open, a stream is counted with its final status whatever the
	// retry layer said: a stream that has begun is not replayed.
	s := &stream{ClientStream: cs, b: c.b, ctx: ctx, method: method, tok: c.tok, start: c.start, serverStreams: desc.ServerStreams}
	if State(c.tok&stateMask) == HalfOpen {
		// A probe must give its slot back even if the caller abandons
		// the stream by cancelling its context.
		s.stop = context.AfterFunc(ctx, func() { s.finish(outcome.Ignored) })
	}
	return s, nil
}

// stream reports the final status of a guarded stream.
type stream struct {
	grpc.ClientStream
	b             *breaker
	ctx           context.Context
	method        string
	tok           uint64
	start         int64
	serverStreams bool
	stop          func() bool
	ended         atomic.Bool
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err == io.EOF:
		s.end(outcome.Success)
	case err != nil:
		s.end(s.b.ic.classify(s.ctx, err))
	case !s.serverStreams:
		// A single response: the call is complete and succeeded.
		s.end(outcome.Success)
	}
	return err
}

func (s *stream) end(class outcome.Class) {
	if s.stop != nil {
		s.stop()
	}
	s.finish(class)
}

func (s *stream) finish(class outcome.Class) {
	if s.ended.Swap(true) {
		return
	}
	s.b.done(s.ctx, s.method, s.tok, class, false, s.start)
}
