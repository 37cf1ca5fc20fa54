package pending_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/pending"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// A client whose charges become pending when they cannot be sent: the
// queue's interceptor goes before the failsoft suite, and its drainer runs
// for as long as the connection.
func ExampleNew() {
	store, err := pending.NewMemoryStore(10_000) // boltstore.Open or redisstore.New in production
	if err != nil {
		log.Fatal(err)
	}
	q, err := pending.New(store,
		pending.ForMethods(policytestv1.TunedService_KeyedWrite_FullMethodName),
		pending.WithMetadata("tenant"),
		pending.OnSettled(func(_ context.Context, s pending.Settled) {
			log.Printf("payment %s confirmed: send the e-mail", s.Key)
		}),
		pending.OnDead(func(_ context.Context, d pending.Dead) {
			log.Printf("payment %s failed for good: %s", d.Key, d.Reason)
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	suite, err := failsoft.DialOptions()
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("dns:///payments.internal:443", append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(q.UnaryClientInterceptor()),
	}, suite...)...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = q.Run(ctx, conn) }()
	// ... make calls on conn ...
}

// What a caller sees when its charge could not be sent now.
func ExampleDeferred() {
	store, _ := pending.NewMemoryStore(10)
	q, _ := pending.New(store, pending.ForMethods(policytestv1.TunedService_KeyedWrite_FullMethodName))
	defer q.Close()
	breakerOpen := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "circuit open"}
	}
	ctx := idempotency.WithKey(context.Background(), "order-42")
	err := q.UnaryClientInterceptor()(ctx, policytestv1.TunedService_KeyedWrite_FullMethodName,
		&policytestv1.PingRequest{Payload: "42 EUR"}, &policytestv1.PingResponse{}, nil, breakerOpen)

	var d *pending.Deferred
	if errors.As(err, &d) {
		fmt.Println("payment pending, we'll confirm by e-mail; key", d.Key)
	}
	st, _ := store.Stats(context.Background())
	fmt.Println("waiting:", st.Depth)
	// Output:
	// payment pending, we'll confirm by e-mail; key order-42
	// waiting: 1
}

// A caller that sees only the status, such as a client of a service that
// passed the error on.
func ExampleIsPending() {
	err := error(&pending.Deferred{Key: "order-42", Method: "/pay.v1.Pay/Charge", Cause: errors.New("circuit open")})
	st := status.Convert(err)
	fmt.Println(st.Code(), pending.IsPending(st))
	fmt.Println(pending.IsPending(status.New(codes.Unavailable, "down")))
	// Output:
	// Unavailable true
	// false
}

// One drain pass, as Run makes them, here against a connection that
// accepts everything.
func ExampleQueue_DrainOnce() {
	store, _ := pending.NewMemoryStore(10)
	q, _ := pending.New(store, pending.ForMethods(policytestv1.TunedService_KeyedWrite_FullMethodName),
		pending.OnSettled(func(_ context.Context, s pending.Settled) { fmt.Println("settled", s.Key) }))
	defer q.Close()
	_ = store.Add(context.Background(), pending.Entry{Key: "order-42", Method: policytestv1.TunedService_KeyedWrite_FullMethodName,
		Enqueued: time.Now(), NotBefore: time.Now()})
	r, err := q.DrainOnce(context.Background(), acceptAll{})
	fmt.Printf("%+v %v\n", r, err)
	// Output:
	// settled order-42
	// {Settled:1 Retry:0 Dead:0} <nil>
}

type acceptAll struct{ grpc.ClientConnInterface }

func (acceptAll) Invoke(context.Context, string, any, any, ...grpc.CallOption) error { return nil }

func ExampleNewMemoryStore() {
	store, _ := pending.NewMemoryStore(1)
	ctx := context.Background()
	now := time.Now()
	fmt.Println(store.Add(ctx, pending.Entry{Key: "a", Method: "/p.S/M", Enqueued: now, NotBefore: now}))
	err := store.Add(ctx, pending.Entry{Key: "b", Method: "/p.S/M", Enqueued: now, NotBefore: now})
	fmt.Println(errors.Is(err, pending.ErrFull))
	// Output:
	// <nil>
	// true
}
