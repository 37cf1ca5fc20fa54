package checkout

// This file is the one place where the client's interceptor chain is built.
// Until the failsoft interceptor packages are available, it holds small
// stand-ins for them with the same placement and the same observe events,
// so the rest of the demo does not change when they are swapped in.

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// ChainConfig is what the checkout story asks of the chain.
type ChainConfig struct {
	// Observer hears every decision of every layer.
	Observer observe.Observer
	// Clock drives backoffs and the breaker; nil for the system clock.
	Clock clock.Clock
	// Seed seeds backoff jitter.
	Seed uint64
	// BreakerFailures failures within BreakerWindow open the breaker for
	// BreakerOpenFor (doubling up to twice that while probes fail).
	BreakerFailures int
	BreakerWindow   time.Duration
	BreakerOpenFor  time.Duration
	// ChargeFallback answers a charge that could not be confirmed.
	ChargeFallback func(ctx context.Context, req *paymentsv1.ChargeRequest, cause error) (*paymentsv1.ChargeResponse, error)
	// OnBreaker hears breaker state changes.
	OnBreaker func(target string, from, to string, at time.Time)
}

// Chain is the client's interceptor chain.
type Chain struct {
	dial []grpc.DialOption
}

// DialOptions returns the options that install the chain.
func (c *Chain) DialOptions() []grpc.DialOption { return c.dial }

// Methods with fallbacks.
var (
	methodCharge     = "/" + paymentsv1.PaymentService_ServiceDesc.ServiceName + "/Charge"
	methodGetPayment = "/" + paymentsv1.PaymentService_ServiceDesc.ServiceName + "/GetPayment"
)

// NewChain builds the chain with failsoft.DialOptions, the library's one
// entry point, and inside it stand-ins for the layers it does not have
// yet. The library's order, outermost first, is
//
//	deadline -> idempotency key -> fallback -> retry/hedge -> throttle -> breaker -> bulkhead
//
// Until retry is part of it, the suite here runs deadline, fallback and
// throttle, and the inner chain runs the key and retry stand-ins and the
// real breaker, so the breaker still counts every attempt and the
// fallback sees the final outcome.
//
// The fallback answers a charge that could not be confirmed with a pending
// payment (ChargeFallback puts it in the outbox), and a payment read with
// the last good answer for the same payment.
func NewChain(cfg ChainConfig) (*Chain, error) {
	res := policy.Default()
	clk := clock.OrSystem(cfg.Clock)
	opts := []failsoft.Option{failsoft.WithResolver(res), failsoft.WithClock(clk), failsoft.WithoutBreaker()}
	if cfg.Observer != nil {
		opts = append(opts, failsoft.WithObserver(cfg.Observer))
	}
	fb := []fallback.Option{fallback.WithCache(methodGetPayment)}
	if cfg.ChargeFallback != nil {
		fb = append(fb, fallback.WithFunc(methodCharge, fallback.Typed(cfg.ChargeFallback)))
	}
	opts = append(opts, failsoft.WithFallback(fb...))
	suite, err := failsoft.DialOptions(opts...)
	if err != nil {
		return nil, err
	}
	bopts := []breaker.Option{
		breaker.WithResolver(res), breaker.WithClock(clk),
		breaker.FailuresWithin(cfg.BreakerFailures, cfg.BreakerWindow),
		breaker.OpenFor(cfg.BreakerOpenFor, 2*cfg.BreakerOpenFor),
	}
	if cfg.Observer != nil {
		bopts = append(bopts, breaker.WithObserver(cfg.Observer))
	}
	if cfg.OnBreaker != nil {
		bopts = append(bopts, breaker.OnStateChange(func(c breaker.Change) {
			cfg.OnBreaker(c.Target, c.From.String(), c.To.String(), c.At)
		}))
	}
	br, err := breaker.New(bopts...)
	if err != nil {
		return nil, err
	}
	rt := &standinRetry{res: res, clk: clk, obs: cfg.Observer, rand: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+1))}
	return &Chain{
		dial: append(suite,
			grpc.WithChainUnaryInterceptor(standinKey(res, cfg.Observer), rt.unary, br.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(br.StreamClientInterceptor()),
		),
	}, nil
}

// startTrace starts the trace of one logical call and returns its ID for
// logs. The stand-in makes a random W3C trace ID and sends it as a
// traceparent entry.
func startTrace(ctx context.Context, _ string) (context.Context, string, func(error)) {
	var b [24]byte
	_, _ = crand.Read(b[:])
	tid := hex.EncodeToString(b[:16])
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+tid+"-"+hex.EncodeToString(b[16:])+"-01")
	return ctx, tid, func(error) {}
}

// traceIDOf returns the trace ID of the call ctx belongs to.
func traceIDOf(ctx context.Context) string {
	tp := firstMD(ctx, "traceparent")
	if len(tp) >= 35 {
		return tp[3:35]
	}
	return ""
}

// closeChain releases what the chain holds (exporters).
func closeChain(*Chain) {}

// --- stand-ins ---

func resolve(res *policy.Resolver, method string) (*policy.Policy, error) {
	p, err := res.Resolve(method)
	if err != nil {
		return nil, &outcome.Rejection{Layer: "policy", Code: codes.FailedPrecondition, Message: err.Error(), Cause: err}
	}
	return p, nil
}

func hasKey(ctx context.Context) bool {
	md, _ := metadata.FromOutgoingContext(ctx)
	return len(md.Get(policy.KeyMetadata)) > 0
}

func standinKey(res *policy.Resolver, obs observe.Observer) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		p, err := resolve(res, method)
		if err != nil {
			return err
		}
		if p.RequiresKey && !hasKey(ctx) {
			ctx = metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, NewKey())
			if obs != nil {
				obs.Observe(ctx, observe.Event{Kind: observe.KeyAttached, Method: method, Target: cc.Target()})
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// NewKey returns a fresh random idempotency key.
func NewKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type standinRetry struct {
	res  *policy.Resolver
	clk  clock.Clock
	obs  observe.Observer
	mu   sync.Mutex
	rand *rand.Rand
}

func (r *standinRetry) jitter(ceil time.Duration) time.Duration {
	if ceil <= 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.rand.Int64N(int64(ceil)))
}

func (r *standinRetry) observe(ctx context.Context, e observe.Event) {
	if r.obs != nil {
		r.obs.Observe(ctx, e)
	}
}

func (r *standinRetry) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	p, err := resolve(r.res, method)
	if err != nil {
		return err
	}
	if p.Hedgeable() {
		return r.hedge(ctx, p, method, req, reply, cc, invoker, opts)
	}
	retryable := p.Retryable(hasKey(ctx))
	ceil := p.Retry.InitialBackoff
	for n := 1; ; n++ {
		var trailer metadata.MD
		err := r.attempt(ctx, p, observe.Attempt{N: n}, method, req, reply, cc, invoker, append(opts, grpc.Trailer(&trailer)))
		if err == nil || !retryable {
			return err
		}
		if _, ok := outcome.AsRejection(err); ok {
			r.observe(ctx, observe.Event{Kind: observe.RetryStopped, Method: method, Target: cc.Target(), Attempt: n, Reason: "rejected", Err: err})
			return err
		}
		if !p.Retry.Codes.Has(outcome.Code(err)) {
			return err
		}
		if n >= p.Retry.MaxAttempts {
			r.observe(ctx, observe.Event{Kind: observe.RetryStopped, Method: method, Target: cc.Target(), Attempt: n, Reason: "attempts", Err: err})
			return err
		}
		wait, reason := r.jitter(ceil), "policy"
		if v := trailer.Get("grpc-retry-pushback-ms"); len(v) > 0 {
			ms, perr := strconv.Atoi(v[0])
			if perr != nil || ms < 0 {
				r.observe(ctx, observe.Event{Kind: observe.RetryStopped, Method: method, Target: cc.Target(), Attempt: n, Reason: "pushback", Err: err})
				return err
			}
			wait, reason = time.Duration(ms)*time.Millisecond, "pushback"
		}
		if dl, ok := ctx.Deadline(); ok && r.clk.Now().Add(wait).After(dl) {
			r.observe(ctx, observe.Event{Kind: observe.RetryStopped, Method: method, Target: cc.Target(), Attempt: n, Reason: "deadline", Err: err})
			return err
		}
		r.observe(ctx, observe.Event{Kind: observe.Backoff, Method: method, Target: cc.Target(), Attempt: n + 1, Duration: wait, Reason: reason})
		t := r.clk.NewTimer(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return err
		}
		ceil = min(time.Duration(float64(ceil)*p.Retry.Multiplier), p.Retry.MaxBackoff)
		if m, ok := reply.(proto.Message); ok {
			proto.Reset(m)
		}
	}
}

func (r *standinRetry) attempt(ctx context.Context, p *policy.Policy, a observe.Attempt, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) error {
	if p.Retry.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.Retry.AttemptTimeout)
		defer cancel()
		a.Timeout = p.Retry.AttemptTimeout
	}
	ctx = observe.WithAttempt(ctx, a)
	if a.N > 1 {
		ctx = metadata.AppendToOutgoingContext(ctx, "grpc-previous-rpc-attempts", strconv.Itoa(a.N-1))
	}
	r.observe(ctx, observe.Event{Kind: observe.AttemptStart, Method: method, Target: cc.Target(), Attempt: a.N, Hedge: a.Hedge})
	start := r.clk.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	r.observe(ctx, observe.Event{Kind: observe.AttemptEnd, Method: method, Target: cc.Target(), Attempt: a.N, Hedge: a.Hedge, Err: err, Duration: r.clk.Now().Sub(start)})
	return err
}

// hedge sends the call, and another attempt each Hedge.Delay while none has
// answered, each into its own reply; the first success is copied into reply
// and the others are cancelled.
func (r *standinRetry) hedge(ctx context.Context, p *policy.Policy, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) error {
	m, ok := reply.(proto.Message)
	if !ok {
		return r.attempt(ctx, p, observe.Attempt{N: 1}, method, req, reply, cc, invoker, opts)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		reply proto.Message
		err   error
	}
	results := make(chan result, p.Hedge.MaxAttempts)
	launch := func(n int) {
		rep := m.ProtoReflect().New().Interface()
		go func() {
			err := r.attempt(ctx, p, observe.Attempt{N: n, Hedge: n > 1}, method, req, rep, cc, invoker, opts)
			results <- result{rep, err}
		}()
	}
	launch(1)
	sent, done := 1, 0
	var lastErr error
	for {
		var tc <-chan time.Time
		if sent < p.Hedge.MaxAttempts {
			t := r.clk.NewTimer(p.Hedge.Delay)
			defer t.Stop()
			tc = t.C()
		}
		select {
		case <-tc:
			sent++
			r.observe(ctx, observe.Event{Kind: observe.Hedge, Method: method, Target: cc.Target(), Attempt: sent, Duration: p.Hedge.Delay})
			launch(sent)
		case res := <-results:
			done++
			if res.err == nil {
				proto.Merge(m, res.reply)
				return nil
			}
			lastErr = res.err
			if done == sent && (sent == p.Hedge.MaxAttempts || !p.Retry.Codes.Has(outcome.Code(res.err))) {
				return lastErr
			}
			if done == sent {
				sent++
				launch(sent)
			}
		}
	}
}
