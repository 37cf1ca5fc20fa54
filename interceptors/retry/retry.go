package retry

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/chain"
)

// Interceptor retries and hedges the calls its policies allow. It is safe
// for concurrent use; make one per client and chain its interceptors.
type Interceptor struct {
	resolver     *policy.Resolver
	obs          observe.Observer
	clock        clock.Clock
	system       bool // clock is the system clock: unary attempts carry their timeout as a context deadline
	rand         func() float64
	budgets      *budgets // nil: no budget
	replayBuffer int
	latency      sync.Map // method -> *latency, for quantile hedge delays
}

// New returns an Interceptor configured by opts. It fails with an error
// naming every invalid option.
func New(opts ...Option) (*Interceptor, error) {
	cfg := defaults()
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	if cfg.Resolver == nil {
		cfg.Resolver = policy.Default()
	}
	ic := &Interceptor{
		resolver:     cfg.Resolver,
		obs:          cfg.Observer,
		clock:        cfg.Clock,
		system:       cfg.Clock == clock.System(),
		rand:         cfg.rand,
		replayBuffer: cfg.replayBuffer,
	}
	if !cfg.budgetOff {
		ic.budgets = newBudgets(cfg.budget, cfg.Clock)
	}
	return ic, nil
}

// UnaryClientInterceptor returns the unary client interceptor.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return chain.UnaryInterceptor(layer{ic})
}

// StreamClientInterceptor returns the stream client interceptor, for all
// three stream kinds.
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return chain.StreamInterceptor(layer{ic})
}

// layer is the Interceptor as a layer of a folded chain.
type layer struct{ ic *Interceptor }

func init() {
	chain.Register(chain.Retry, func(ic *Interceptor) chain.Layer { return chain.Both(layer{ic}) })
}

func (l layer) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return l.ic.stream(ctx, desc, cc, method, next, opts...)
}

func (l layer) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	ic := l.ic
	now := ic.clock.Now()
	c := call{ic: ic, ctx: ctx, method: method}
	if err := c.open(cc, &next.State, opts, now, reply); err != nil {
		return err
	}
	if c.hedge && c.max > 1 {
		return newHedger(&c, req, reply.(proto.Message), cc, next, opts).run()
	}
	return c.unary(now, req, reply, cc, next, opts)
}

// unary sends the attempts of a unary call, one after another, until one
// succeeds or retrying ends. now is the clock's reading at the first
// attempt.
func (c *call) unary(now time.Time, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts []grpc.CallOption) error {
	var wait time.Duration
	var reason string
	for {
		next.MayRetry = c.begin(now)
		// An attempt of a call that may be retried collects its trailer,
		// which may hold the server's pushback.
		var a *unaryAttempt
		var ctx context.Context
		aopts := opts
		if c.max > 1 {
			a = c.newUnaryAttempt(opts, wait, reason)
			ctx, aopts = a, a.opts
		} else {
			ctx = c.attemptContext(false, wait, reason)
		}
		var at attemptTimer
		actx := at.start(c, ctx, now, false)
		var start time.Time
		if c.watch {
			start = c.attemptStart(actx, c.n, false)
		}
		err := next.Invoke(actx, c.method, req, reply, cc, aopts...)
		var md metadata.MD
		if a != nil {
			md = a.trailer
		}
		timedOut := at.finish(err)
		if timedOut {
			err = timeoutError(err, c.n, c.timeout)
		}
		if c.watch {
			c.attemptEnd(actx, c.n, false, start, err)
		}
		if err == nil {
			c.succeeded()
			return nil
		}
		if c.max == 1 {
			return err
		}
		var stop error
		if wait, reason, stop = c.next(err, md, timedOut); stop != nil {
			return stop
		}
		if err := c.sleep(wait, reason, err); err != nil {
			return err
		}
		now = c.ic.clock.Now()
	}
}

// unaryAttempt is one attempt of a unary call that may be retried: its
// context, which tells the layers inside which attempt it is
// (observe.AttemptFrom), and the trailer grpc-go writes into, where the
// server's pushback is read, together in one allocation.
type unaryAttempt struct {
	observe.AttemptContext
	trailer metadata.MD
	// opts are the call's options followed by the one that collects the
	// trailer. room holds them when the call has up to three (in the
	// suite: its marker, grpc.StaticMethod from generated code and one
	// more); a call with more takes an allocation for them.
	opts []grpc.CallOption
	room [4]grpc.CallOption
}

// newUnaryAttempt returns attempt c.n of a unary call with options opts,
// sent after waiting wait for reason.
func (c *call) newUnaryAttempt(opts []grpc.CallOption, wait time.Duration, reason string) *unaryAttempt {
	a := &unaryAttempt{AttemptContext: observe.AttemptContext{
		Context: c.attemptParent(),
		Attempt: c.attempt(false, wait, reason),
	}}
	a.opts = append(append(a.room[:0], opts...), grpc.Trailer(&a.trailer))
	return a
}
