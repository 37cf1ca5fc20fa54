package checkout

// This file is the one place where the client's interceptor chain and its
// tracing are set up.

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
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
// entry point, which orders the layers (outermost first): deadline,
// idempotency key, fallback, retry and hedging, throttle, circuit breaker.
// What each may do with a method comes from payments.proto.
//
// The checkout story adds: a breaker that opens after BreakerFailures
// failures within BreakerWindow; a fallback that answers a charge that
// could not be confirmed with a pending payment (ChargeFallback puts it in
// the outbox) and a payment read with the last good answer for it; seeded
// backoff jitter.
func NewChain(cfg ChainConfig) (*Chain, error) {
	res := policy.Default()
	clk := clock.OrSystem(cfg.Clock)
	jitter := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+1))
	var jitterMu sync.Mutex
	bopts := []breaker.Option{
		breaker.FailuresWithin(cfg.BreakerFailures, cfg.BreakerWindow),
		breaker.OpenFor(cfg.BreakerOpenFor, 2*cfg.BreakerOpenFor),
	}
	if cfg.OnBreaker != nil {
		bopts = append(bopts, breaker.OnStateChange(func(c breaker.Change) {
			cfg.OnBreaker(c.Target, c.From.String(), c.To.String(), c.At)
		}))
	}
	fb := []fallback.Option{fallback.WithCache(methodGetPayment)}
	if cfg.ChargeFallback != nil {
		fb = append(fb, fallback.WithFunc(methodCharge, fallback.Typed(cfg.ChargeFallback)))
	}
	opts := []failsoft.Option{
		failsoft.WithResolver(res),
		failsoft.WithClock(clk),
		failsoft.WithRetry(retry.WithRand(func() float64 {
			jitterMu.Lock()
			defer jitterMu.Unlock()
			return jitter.Float64()
		})),
		failsoft.WithBreaker(bopts...),
		failsoft.WithFallback(fb...),
	}
	if cfg.Observer != nil {
		opts = append(opts, failsoft.WithObserver(cfg.Observer))
	}
	suite, err := failsoft.DialOptions(opts...)
	if err != nil {
		return nil, err
	}
	return &Chain{dial: suite}, nil
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

// NewKey returns a fresh idempotency key.
func NewKey() string { return idempotency.NewKey() }
