package harness

import (
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
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

// serverDedup returns the server's deduplication layer for KeyedWrite, the
// same for every chain (clients without keys pass through it).
//
// SLOT: when interceptors/idempotency lands, return a fresh
// idempotency.NewServer(...).UnaryServerInterceptor() here, so the
// scenario exercises failsoft's own server side. Until then nil selects
// the harness's minimal in-memory layer (KeyDedup).
func serverDedup() (grpc.UnaryServerInterceptor, error) { return nil, nil }

// failsoftChain is failsoft's client suite as a user installs it, from
// the root entry point failsoft.DialOptions, with the settings of p given
// through the resolver. The breaker keeps its own trip rule (the default)
// and opens for BreakerDelay, doubling while probes fail.
//
// Layers not on main yet (retry and hedging, idempotency keys, telemetry)
// join the chain through DialOptions when they land; failsoftHedges says
// whether the chain hedges.
func failsoftChain(p Params) (*Chain, error) {
	res, err := benchResolver(p)
	if err != nil {
		return nil, err
	}
	opens := new(atomic.Int64)
	dial, err := failsoft.DialOptions(
		failsoft.WithResolver(res),
		failsoft.WithBreaker(
			breaker.OpenFor(p.BreakerDelay, 30*p.BreakerDelay),
			breaker.OnStateChange(func(c breaker.Change) {
				if c.To == breaker.Open {
					opens.Add(1)
				}
			}),
		),
	)
	if err != nil {
		return nil, err
	}
	return &Chain{Dial: dial, Hedges: p.Hedge && failsoftHedges, BreakerOpens: opens}, nil
}

// failsoftHedges: the retry layer, which hedges, is not on main yet.
const failsoftHedges = false
