package throttle

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/internal/registry"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/internal/chain"
)

// Layer is the Rejection.Layer of the throttle's local rejections.
const Layer = "throttle"

// Interceptor throttles calls per target. Build it with New; it is safe
// for concurrent use, and one Interceptor serves any number of ClientConns.
type Interceptor struct {
	cfg    config
	base   time.Time     // bucket 0 starts here
	width  time.Duration // of a bucket
	system bool          // cfg.Clock is the system clock

	// The counts by target. When the registry is full, a target whose
	// window holds no refusal makes room.
	targets registry.Table[string, ring]
}

// New returns an Interceptor configured by opts, or an error naming every
// invalid option.
func New(opts ...Option) (*Interceptor, error) {
	cfg := defaults()
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	t := &Interceptor{
		cfg:    cfg,
		base:   cfg.Clock.Now(),
		width:  cfg.window / time.Duration(cfg.buckets),
		system: cfg.Clock == clock.System(),
	}
	t.targets.Init(cfg.maxTargets,
		func(string) *ring { return newRing(cfg.buckets) },
		func(r *ring) registry.Worth {
			if r.allAccepted(t.index()) {
				return registry.Nothing // its probability is 0, as a new one's
			}
			return registry.Little
		})
	return t, nil
}

// State is what the throttle knows about a target now.
type State struct {
	// Requests and Accepts are counted over the window: every call that
	// went through the throttle and finished, plus every call it rejected;
	// of those, the calls the target accepted.
	Requests, Accepts uint64
	// Probability is the chance that the next call is rejected locally.
	Probability float64
}

// State returns the throttle's counts and rejection probability for target
// (a ClientConn's Target()). An unknown target has the zero State.
func (t *Interceptor) State(target string) State {
	r := t.targets.Lookup(target)
	if r == nil {
		return State{}
	}
	req, acc := r.totals(t.index())
	return State{Requests: req, Accepts: acc, Probability: probability(req, acc, t.cfg.k, t.cfg.maxProbability)}
}

// UnaryClientInterceptor returns the unary interceptor: it rejects a call
// locally with the throttle's probability, and otherwise sends it and
// counts its result.
func (t *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(layer{t})
}

// layer is the Interceptor as a layer of a folded chain.
type layer struct{ t *Interceptor }

func init() {
	chain.Register(chain.Throttle, func(t *Interceptor) chain.Layer { return chain.Both(layer{t}) })
}

func (l layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	t := l.t
	target := targetOf(cc)
	r := t.targets.Get(target)
	at, err := t.admit(ctx, r, target, method)
	if err != nil {
		return err
	}
	err = next.Invoke(ctx, method, req, reply, cc, opts...)
	t.record(r, at, err)
	return err
}

// StreamClientInterceptor returns the stream interceptor: it rejects the
// opening of a stream locally with the throttle's probability, and
// otherwise counts the stream's result: a failure to open it, or its final
// status, seen when RecvMsg returns an error (io.EOF is success) or, for a
// stream without server streaming, when RecvMsg returns the one response.
// A stream the caller abandons before its end is not counted. The
// interceptor starts no goroutine and never cancels the stream's context.
func (t *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(layer{t})
}

func (l layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	t := l.t
	target := targetOf(cc)
	r := t.targets.Get(target)
	at, err := t.admit(ctx, r, target, method)
	if err != nil {
		return nil, err
	}
	cs, err := next.NewStream(ctx, desc, cc, method, opts...)
	if err != nil {
		t.record(r, at, err)
		return nil, err
	}
	return &stream{ClientStream: cs, t: t, r: r, at: at, unaryResponse: !desc.ServerStreams}, nil
}

// stream counts its final status once. RecvMsg is never called
// concurrently with itself, so done needs no synchronisation.
type stream struct {
	grpc.ClientStream
	t             *Interceptor
	r             *ring
	at            time.Duration // when the stream was opened
	unaryResponse bool
	done          bool
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if s.done {
		return err
	}
	switch {
	case err == io.EOF:
		s.done = true
		s.t.record(s.r, s.at, nil)
	case err != nil:
		s.done = true
		s.t.record(s.r, s.at, err)
	case s.unaryResponse:
		// grpc-go has already read the status: the call succeeded.
		s.done = true
		s.t.record(s.r, s.at, nil)
	}
	return err
}

func targetOf(cc *grpc.ClientConn) string {
	if cc == nil {
		return ""
	}
	return cc.Target()
}

// since returns the time since the Interceptor was built. On the system
// clock, time.Since reads only the monotonic clock.
func (t *Interceptor) since() time.Duration {
	var d time.Duration
	if t.system {
		d = time.Since(t.base)
	} else {
		d = t.cfg.Clock.Now().Sub(t.base)
	}
	return max(d, 0)
}

// index is the number of the bucket the clock is in now.
func (t *Interceptor) index() uint64 { return uint64(t.since() / t.width) }

// admit decides whether a call may go, and returns when it started (see
// since); when not, it counts the call as a request, reports it and
// returns the Rejection.
func (t *Interceptor) admit(ctx context.Context, r *ring, target, method string) (time.Duration, error) {
	at := t.since()
	idx := uint64(at / t.width)
	if r.allAccepted(idx) {
		return at, nil // the common case: nothing to throttle
	}
	req, acc := r.totals(idx)
	p := probability(req, acc, t.cfg.k, t.cfg.maxProbability)
	if p <= 0 || t.cfg.rand() >= p {
		return at, nil
	}
	r.addSoft(idx)
	rej := &outcome.Rejection{
		Layer:  Layer,
		Target: target,
		Code:   codes.ResourceExhausted,
		Message: fmt.Sprintf("failsoft: throttle: call to %s rejected locally with probability %.2f: the target accepted %d of the last %d requests in %v",
			target, p, acc, req, t.cfg.window),
	}
	if o := t.cfg.Observer; o != nil {
		o.Observe(ctx, observe.Event{Kind: observe.Throttled, Method: method, Target: target, Value: p, Err: rej})
	}
	return at, rej
}

// record counts the result of a call sent at at in the bucket it started
// in: a call is counted whole when it ends, which saves a second clock
// read.
func (t *Interceptor) record(r *ring, at time.Duration, err error) {
	idx := uint64(at / t.width)
	accepted := true
	switch t.cfg.classifier.Classify(err) {
	case outcome.Overload:
		accepted = false
	case outcome.Failure:
		// A target that still answers some calls is overloaded, whatever
		// the code of the others; one that answers none is down, which
		// is the breaker's business, and holding the outage against it
		// would slow its recovery. A failure is a weaker sign of overload
		// than RESOURCE_EXHAUSTED (a flaky target fails too), so it counts
		// only once the window holds enough calls to tell the two apart,
		// and only as a presumed refusal, forgotten if the target dies or
		// heals.
		if t.cfg.failuresAsRejects && !r.failed(at) && r.presumed(at, idx) {
			r.addSoft(idx)
			return
		}
	case outcome.Ignored:
		if err != nil && isRejection(err) {
			// A layer inside answered locally: the target never saw it.
			return
		}
		t.answered(r, at)
	case outcome.Success:
		t.answered(r, at)
	}
	r.add(idx, accepted)
}

// answered notes that the target did the work of a call sent at at. Whether
// it answers matters only to failures presumed refusals: without
// WithFailuresAsRejects nothing is presumed, and nothing is noted.
func (t *Interceptor) answered(r *ring, at time.Duration) {
	if t.cfg.failuresAsRejects {
		r.answered(at)
	}
}

func isRejection(err error) bool {
	if _, ok := err.(*outcome.Rejection); ok {
		return true
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return false // a plain status, the common case
	}
	_, ok := outcome.AsRejection(err)
	return ok
}
