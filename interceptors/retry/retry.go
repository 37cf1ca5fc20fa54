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
	serverpb "github.com/failsoft/failsoft/interceptors/internal/pushback"
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

// UnaryClientInterceptor returns the unary client interceptor. It marks
// its attempts' server pushback itself (UnaryPushbackInterceptor), around
// the invoker it is given, to read how long the server asks it to wait.
func (ic *Interceptor) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	layers := chain.NewUnaries(layer{ic}).Inside(unaryPushback)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return layers.Start(invoker).Invoke(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor returns the stream client interceptor, for all
// three stream kinds. Like the unary one, it marks its attempts' server
// pushback itself (StreamPushbackInterceptor), around the streamer it is
// given, so that a stream's final error says Overload to the layers
// outside exactly when a unary call's would.
func (ic *Interceptor) StreamClientInterceptor() grpc.StreamClientInterceptor {
	layers := chain.NewStreams(layer{ic}, thePushbackLayer)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return layers.Start(streamer).NewStream(ctx, desc, cc, method, opts...)
	}
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
		ctx, aopts := c.unaryAttempt(opts, wait, reason)
		var at attemptTimer
		actx := at.start(c, ctx, now, false)
		var start time.Time
		if c.watch {
			start = c.attemptStart(actx, c.n, false)
		}
		err := next.Invoke(actx, c.method, req, reply, cc, aopts...)
		var pb serverpb.Pushback
		if err != nil {
			// Read before a timeout replaces err.
			pb = serverPushback(nil, err)
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
		if wait, reason, stop = c.next(err, pb, timedOut); stop != nil {
			return stop
		}
		if err := c.sleep(wait, reason, err); err != nil {
			return err
		}
		now = c.ic.clock.Now()
	}
}

// unaryAttempt returns the context and the options of attempt c.n of a
// unary call, sent after waiting wait for reason: attemptContext's
// context, and the call's options. An attempt whose context carries an
// observe.Attempt also carries, in the same allocation, a grpc.Trailer
// option for the pushback marking inside (UnaryPushbackInterceptor), which
// would otherwise take a trailer holder from its pool.
func (c *call) unaryAttempt(opts []grpc.CallOption, wait time.Duration, reason string) (context.Context, []grpc.CallOption) {
	if c.bareFirst(false) {
		return c.attemptParent(), opts
	}
	ua := &unaryAttempt{AttemptContext: observe.AttemptContext{Context: c.attemptParent(), Attempt: c.attempt(false, wait, reason)}}
	ua.opts = append(append(ua.room[:0], opts...), grpc.Trailer(&ua.trailer))
	return ua, ua.opts
}

// unaryAttempt is the context of a unary attempt that carries its
// observe.Attempt, and its options followed by one that collects its
// trailer into trailer. room holds the options when the call has up to
// three (in the suite: its marker, grpc.StaticMethod from generated code
// and one more); a call with more takes an allocation for them.
type unaryAttempt struct {
	observe.AttemptContext
	trailer metadata.MD
	opts    []grpc.CallOption
	room    [4]grpc.CallOption
}
