package harness

import (
	"time"

	"google.golang.org/grpc"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/policy"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
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
		policy.WithMethod(methodHedged, &failsoftv1.MethodPolicy{Retry: retry, Hedge: hedge}),
		policy.WithMethod(methodKeyedWrite, &failsoftv1.MethodPolicy{Retry: retry}),
	)
}

// serverDedup returns the server's deduplication layer for KeyedWrite, the
// same for every chain (clients without keys pass through it).
//
// SLOT: when interceptors/idempotency lands, return a fresh
// idempotency.NewServer(...).UnaryServerInterceptor() here, so the
// scenario exercises failsoft's own server side. Until then nil selects
// the harness's minimal in-memory layer (KeyDedup).
func serverDedup() (grpc.UnaryServerInterceptor, error) { return nil, nil }

// failsoftChain is failsoft's full client chain with the settings of p.
//
// SLOT: the interceptor packages (deadline, idempotency, fallback, retry,
// breaker, throttle, bulkhead, telemetry) and the root entry point are not
// on main yet. When they land, build the chain here from their New(...)
// constructors with WithResolver(res) (or from the root entry point), set
// Hedges when p.Hedge, and count breaker opens through an observe.Observer
// (observe.BreakerState events with To == "open") into BreakerOpens.
func failsoftChain(p Params) (*Chain, error) {
	if _, err := benchResolver(p); err != nil {
		return nil, err
	}
	return nil, ErrPending
}
