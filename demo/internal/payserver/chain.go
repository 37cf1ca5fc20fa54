package payserver

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/idempotency/redisstore"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/telemetry"
)

// keyEvents counts what the idempotency interceptor did.
type keyEvents struct {
	replays, conflicts atomic.Uint64
}

func (k *keyEvents) Observe(_ context.Context, e observe.Event) {
	switch e.Kind {
	case observe.Replay:
		k.replays.Add(1)
	case observe.KeyConflict:
		k.conflicts.Add(1)
	}
}

// serverChain returns the server's interceptors, outermost first:
//
//	chaos -> failsoft.ServerOptions (telemetry -> deadline -> idempotency) -> service
//
// Chaos comes first because it plays the network: an injected error or
// outage never reaches the server (no server span, nothing runs), and a
// response lost after commit is dropped after the idempotency interceptor
// stored it, so the retry is answered from the store, while the server
// span shows the call succeeded.
//
// The idempotency store is in memory, or in Redis when redisURL is set
// (for example redis://127.0.0.1:6379/0). The returned close function
// releases the Redis client.
func serverChain(tp trace.TracerProvider, mp metric.MeterProvider, inj *chaos.Injector, redisURL string, obs observe.Observer) (
	[]grpc.ServerOption, func() error, error,
) {
	closeStore := func() error { return nil }
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	// The demo's callers are not authenticated: they share one identity.
	idem := []idempotency.ServerOption{idempotency.WithIdentity(idempotency.Unauthenticated)}
	if redisURL != "" {
		ro, err := redis.ParseURL(redisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("idempotency store: %w", err)
		}
		rc := redis.NewClient(ro)
		st, err := redisstore.New(rc)
		if err != nil {
			rc.Close()
			return nil, nil, fmt.Errorf("idempotency store: %w", err)
		}
		idem = append(idem, idempotency.WithStore(st))
		closeStore = rc.Close
	}
	suite, err := failsoft.ServerOptions(
		failsoft.WithServerObserver(obs),
		failsoft.WithServerTelemetry(telemetry.WithTracerProvider(tp), telemetry.WithMeterProvider(mp)),
		failsoft.WithServerIdempotency(idem...),
	)
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	return append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(inj.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(inj.StreamServerInterceptor())}, suite...), closeStore, nil
}
