package payserver

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/deadline"
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

// serverChain builds the server interceptors, outermost first:
//
//	telemetry -> chaos -> idempotency -> deadline -> service
//
// Telemetry comes first so that the server span continues the client's
// trace and shows the injected faults.
// Chaos comes first so that an injected fault looks like the network
// failing: nothing behind it runs for an injected error, and a lost
// response is dropped after the idempotency interceptor stored it, so the
// retry is answered from the store. The deadline interceptor gives the
// handler a deadline a safety margin before the caller's.
//
// The idempotency store is in memory, or in Redis when redisURL is set
// (for example redis://127.0.0.1:6379/0). The returned close function
// releases the Redis client.
func serverChain(tp trace.TracerProvider, chaosU grpc.UnaryServerInterceptor, chaosS grpc.StreamServerInterceptor, redisURL string, ev *keyEvents) (
	[]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor, func() error, error,
) {
	closeStore := func() error { return nil }
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	tel, err := telemetry.New(telemetry.WithTracerProvider(tp))
	if err != nil {
		return nil, nil, nil, err
	}
	opts := []idempotency.ServerOption{idempotency.WithObserver(observe.Multi(ev, tel))}
	if redisURL != "" {
		ro, err := redis.ParseURL(redisURL)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("idempotency store: %w", err)
		}
		rc := redis.NewClient(ro)
		st, err := redisstore.New(rc)
		if err != nil {
			rc.Close()
			return nil, nil, nil, fmt.Errorf("idempotency store: %w", err)
		}
		opts = append(opts, idempotency.WithStore(st))
		closeStore = rc.Close
	}
	idem, err := idempotency.NewServer(opts...)
	if err != nil {
		closeStore()
		return nil, nil, nil, err
	}
	dl, err := deadline.New()
	if err != nil {
		closeStore()
		return nil, nil, nil, err
	}
	return []grpc.UnaryServerInterceptor{tel.UnaryServerInterceptor(), chaosU, idem.UnaryServerInterceptor(), dl.UnaryServerInterceptor()},
		[]grpc.StreamServerInterceptor{tel.StreamServerInterceptor(), chaosS, idem.StreamServerInterceptor(), dl.StreamServerInterceptor()},
		closeStore, nil
}
