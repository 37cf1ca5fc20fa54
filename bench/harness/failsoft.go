package harness

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// benchResolver gives failsoft the same settings as the peers (Params),
// in code over the test service's proto options. Which methods may be
// retried or hedged still comes from the proto: Override is IDEMPOTENT,
// Hedged is NO_SIDE_EFFECTS, KeyedWrite is retried only with a key.
func benchResolver(p Params) (*policy.Resolver, error) {
	retry := &failsoftv1.RetryPolicy{
		MaxAttempts:       proto.Uint32(uint32(p.Attempts)),
		InitialBackoff:    durationpb.New(p.Backoff),
		MaxBackoff:        durationpb.New(p.MaxBackoff),
		BackoffMultiplier: proto.Float64(2),
		RetryableCodes:    []string{"UNAVAILABLE", "RESOURCE_EXHAUSTED"},
	}
	hedge := &failsoftv1.HedgePolicy{MaxAttempts: proto.Uint32(1)}
	if p.Hedge {
		hedge = &failsoftv1.HedgePolicy{Delay: durationpb.New(p.HedgeDelay), MaxAttempts: proto.Uint32(2)}
	}
	return policy.New(
		policy.WithService(benchService, &failsoftv1.MethodPolicy{
			Timeout:   durationpb.New(p.Timeout),
			MinBudget: durationpb.New(time.Millisecond),
			Retry:     retry,
		}),
		policy.WithMethod(methodOverride, &failsoftv1.MethodPolicy{Retry: retry}),
		// Code policies are validated on their own, so the hedged method
		// restates the NO_SIDE_EFFECTS its proto declares.
		policy.WithMethod(methodHedged, &failsoftv1.MethodPolicy{
			Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_NO_SIDE_EFFECTS,
			Retry:       retry,
			Hedge:       hedge,
		}),
		policy.WithMethod(methodKeyedWrite, &failsoftv1.MethodPolicy{Retry: retry}),
	)
}

// chargePolicy is the resolver a user of the README writes for a Charge
// method whose proto says nothing: requires_idempotency_key only, given in
// code; every other method keeps what its proto says. The server's
// deduplication layer reads it too, so that it stores the charge's
// results.
func chargePolicy() (*policy.Resolver, error) {
	return policy.New(policy.WithMethod(methodCharge, &failsoftv1.MethodPolicy{
		RequiresIdempotencyKey: proto.Bool(true),
	}))
}

// serverDedup returns the server's deduplication layer for KeyedWrite,
// the same for every chain: failsoft's idempotency server interceptor with
// its in-memory store, for requests that carry a key. Requests without a
// key go straight to the handler, as they would on a server that still
// accepts clients without keys; failsoft's layer on its own refuses them
// with INVALID_ARGUMENT, and the peers could not call the method at all.
func serverDedup() ([]grpc.ServerOption, error) {
	res, err := chargePolicy()
	if err != nil {
		return nil, err
	}
	keys, err := idempotency.NewServer(idempotency.WithResolver(res), idempotency.WithIdentity(idempotency.Unauthenticated))
	if err != nil {
		return nil, err
	}
	dedup := keys.UnaryServerInterceptor()
	keyedOnly := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(policy.KeyMetadata)) == 0 {
			return h(ctx, req)
		}
		return dedup(ctx, req, info, h)
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(keyedOnly)}, nil
}

// failsoftChain is failsoft's client suite as a user installs it, from
// the root entry point failsoft.DialOptions: telemetry (with no-op tracer
// and meter providers), deadline, idempotency key, fallback, retry and
// hedging with the budget, throttle, breaker. The settings of p reach it
// through the resolver. The breaker keeps its own trip rule (the default)
// and opens for BreakerDelay, doubling while probes fail.
// With p.Failsoft other than BenchSettings it is set up as that says
// instead (see failsoftDefaults).
func failsoftChain(p Params) (*Chain, error) {
	switch p.Failsoft {
	case LibraryDefaults:
		return failsoftDefaults(true)
	case ReadmeBreaker:
		return failsoftDefaults(true, breaker.FailuresWithin(5, 30*time.Second))
	case NoBreaker:
		return failsoftDefaults(false)
	}
	return failsoftWith(p)
}

// Failsoft names the whole suite as a user installs it.
const Failsoft = "failsoft"

// GoalsChain names the suite without its adaptive throttle: the chain
// failsoft's cost goals name (deadline, idempotency key, retry, breaker,
// telemetry with no-op providers), measured by the Go benchmarks only.
const GoalsChain = "failsoft without throttle (the goals' chain)"

func failsoftGoalsChain(p Params) (*Chain, error) { return failsoftWith(p, failsoft.WithoutThrottle()) }

// failsoftDefaults is the suite with the library's defaults, as a new
// user installs it: the only policy in code is the README's Charge policy
// (requires_idempotency_key only) for the charge method, whose proto says
// nothing; the reads carry the standard idempotency_level alone. The
// breaker, when on, keeps its defaults but for rule. Telemetry gets no-op providers, which is what the
// global ones are until a user installs an SDK.
func failsoftDefaults(withBreaker bool, rule ...breaker.Option) (*Chain, error) {
	res, err := chargePolicy()
	if err != nil {
		return nil, err
	}
	opens := new(atomic.Int64)
	opts := []failsoft.Option{
		failsoft.WithResolver(res),
		failsoft.WithTelemetry(
			telemetry.WithTracerProvider(tracenoop.NewTracerProvider()),
			telemetry.WithMeterProvider(metricnoop.NewMeterProvider()),
		),
	}
	if withBreaker {
		opts = append(opts, failsoft.WithBreaker(append(rule, countOpens(opens))...))
	} else {
		opts = append(opts, failsoft.WithoutBreaker())
		opens = nil
	}
	dial, err := failsoft.DialOptions(opts...)
	if err != nil {
		return nil, err
	}
	return &Chain{Dial: dial, BreakerOpens: opens}, nil
}

// countOpens counts the breaker's transitions to open in n.
func countOpens(n *atomic.Int64) breaker.Option {
	return breaker.OnStateChange(func(c breaker.Change) {
		if c.To == breaker.Open {
			n.Add(1)
		}
	})
}

// failsoftWith is failsoftChain with more options.
func failsoftWith(p Params, more ...failsoft.Option) (*Chain, error) {
	res, err := benchResolver(p)
	if err != nil {
		return nil, err
	}
	opens := new(atomic.Int64)
	dial, err := failsoft.DialOptions(append([]failsoft.Option{
		failsoft.WithResolver(res),
		failsoft.WithTelemetry(
			telemetry.WithTracerProvider(tracenoop.NewTracerProvider()),
			telemetry.WithMeterProvider(metricnoop.NewMeterProvider()),
		),
		failsoft.WithBreaker(
			breaker.OpenFor(p.BreakerDelay, 30*p.BreakerDelay),
			countOpens(opens),
		),
	}, more...)...)
	if err != nil {
		return nil, err
	}
	return &Chain{Dial: dial, Hedges: p.Hedge, BreakerOpens: opens}, nil
}
