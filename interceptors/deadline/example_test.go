package deadline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

func ExampleNew() {
	dl, err := deadline.New(
		deadline.WithDefaultTimeout(5*time.Second),  // for methods without a timeout
		deadline.WithMinBudget(10*time.Millisecond), // for methods without a min_budget
	)
	if err != nil {
		log.Fatal(err)
	}
	// First in the chain, so one deadline covers everything inside it.
	cc, err := grpc.NewClient("dns:///payments.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(dl.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(dl.StreamClientInterceptor()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()

	_, err = deadline.New(deadline.WithDefaultTimeout(0))
	fmt.Println(err)
	// Output:
	// deadline.WithDefaultTimeout(0s): must be positive, every call needs a deadline
}

// printDeadline is an invoker that shows the deadline a call was sent with.
func printDeadline(start time.Time) grpc.UnaryInvoker {
	return func(ctx context.Context, method string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		d, _ := ctx.Deadline()
		fmt.Println(method, "sent with", d.Sub(start))
		return nil
	}
}

func ExampleInterceptor_UnaryClientInterceptor() {
	start := time.Now()
	dl, err := deadline.New(deadline.WithClock(clock.NewFake(start)))
	if err != nil {
		log.Fatal(err)
	}
	unary := dl.UnaryClientInterceptor()
	send := printDeadline(start)

	// The test proto gives TunedService's methods a 5 s timeout.
	_ = unary(context.Background(), "/failsoft.policytest.v1.TunedService/Inherit", nil, nil, nil, send)
	// A method without one gets the default.
	_ = unary(context.Background(), "/failsoft.policytest.v1.PlainService/Plain", nil, nil, nil, send)
	// The caller's deadline wins when it is earlier, and is never extended.
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(time.Second))
	defer cancel()
	_ = unary(ctx, "/failsoft.policytest.v1.TunedService/Inherit", nil, nil, nil, send)

	// Too little budget left: failed at once, never sent.
	ctx, cancel = context.WithDeadline(context.Background(), start.Add(20*time.Millisecond))
	defer cancel()
	err = unary(ctx, "/failsoft.policytest.v1.TunedService/Inherit", nil, nil, nil, send)
	rej, _ := outcome.AsRejection(err)
	fmt.Println(status.Code(err), rej.Layer, errors.Is(err, context.DeadlineExceeded))
	fmt.Println(rej.Message)
	// Output:
	// /failsoft.policytest.v1.TunedService/Inherit sent with 5s
	// /failsoft.policytest.v1.PlainService/Plain sent with 10s
	// /failsoft.policytest.v1.TunedService/Inherit sent with 1s
	// DeadlineExceeded deadline true
	// failsoft: deadline: 20ms of budget left for /failsoft.policytest.v1.TunedService/Inherit, the minimum is 50ms; the call was not sent
}

func ExampleInterceptor_StreamClientInterceptor() {
	dl, err := deadline.New()
	if err != nil {
		log.Fatal(err)
	}
	stream := dl.StreamClientInterceptor()
	var opened context.Context
	streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
		opened = ctx
		return &exampleStream{ctx: ctx}, nil
	}
	desc := &grpc.StreamDesc{ServerStreams: true}
	cs, err := stream(context.Background(), desc, nil, "/failsoft.policytest.v1.TunedService/Watch", streamer)
	if err != nil {
		log.Fatal(err)
	}
	_, hasDeadline := opened.Deadline()
	fmt.Println("deadline:", hasDeadline, "alive after open:", opened.Err() == nil)
	fmt.Println(cs.RecvMsg(nil), "alive:", opened.Err() == nil)
	fmt.Println(cs.RecvMsg(nil), "released:", opened.Err() != nil)
	// Output:
	// deadline: true alive after open: true
	// <nil> alive: true
	// EOF released: true
}

// exampleStream delivers one message, then io.EOF.
type exampleStream struct {
	grpc.ClientStream
	ctx  context.Context
	sent bool
}

func (s *exampleStream) Context() context.Context { return s.ctx }

func (s *exampleStream) RecvMsg(any) error {
	if s.sent {
		return io.EOF
	}
	s.sent = true
	return nil
}

func ExampleInterceptor_UnaryServerInterceptor() {
	dl, err := deadline.New(deadline.WithSafetyMargin(100 * time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	// On a service that calls other services: its handlers, and every call
	// they make with their context, give up 100 ms before their caller.
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(dl.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(dl.StreamServerInterceptor()),
	)
	defer srv.Stop()

	// What a handler sees for a call that arrived with 2 s left:
	incoming := time.Now().Add(2 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), incoming)
	defer cancel()
	_, _ = dl.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
		d, _ := ctx.Deadline()
		fmt.Println("handler gives up", incoming.Sub(d), "before its caller")
		return nil, nil
	})
	// Output:
	// handler gives up 100ms before its caller
}

func ExampleWithObserver() {
	start := time.Now()
	budgets := observe.Func(func(_ context.Context, e observe.Event) {
		fmt.Println(e.Kind, e.Reason, e.Duration)
	})
	dl, err := deadline.New(deadline.WithObserver(budgets), deadline.WithClock(clock.NewFake(start)))
	if err != nil {
		log.Fatal(err)
	}
	nop := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	_ = dl.UnaryClientInterceptor()(context.Background(), "/failsoft.policytest.v1.TunedService/Override", nil, nil, nil, nop)
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(10*time.Millisecond))
	defer cancel()
	_ = dl.UnaryClientInterceptor()(ctx, "/failsoft.policytest.v1.TunedService/Override", nil, nil, nil, nop)
	// Output:
	// deadline_set policy 2s
	// deadline_fail_fast caller 10ms
}

func ExampleWithResolver() {
	// A method of a service the user cannot annotate gets its timeout and
	// minimum budget in code.
	r, err := policy.New(policy.WithMethod("/search.v1.Search/Query", &failsoftv1.MethodPolicy{
		Timeout:   durationpb.New(800 * time.Millisecond),
		MinBudget: durationpb.New(100 * time.Millisecond),
	}))
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	dl, err := deadline.New(deadline.WithResolver(r), deadline.WithClock(clock.NewFake(start)))
	if err != nil {
		log.Fatal(err)
	}
	_ = dl.UnaryClientInterceptor()(context.Background(), "/search.v1.Search/Query", nil, nil, nil, printDeadline(start))
	// Output:
	// /search.v1.Search/Query sent with 800ms
}

func ExampleInterceptor_StreamServerInterceptor() {
	dl, err := deadline.New(deadline.WithSafetyMargin(50 * time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	incoming := time.Now().Add(time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), incoming)
	defer cancel()
	_ = dl.StreamServerInterceptor()(nil, &exampleServerStream{ctx: ctx}, &grpc.StreamServerInfo{},
		func(_ any, ss grpc.ServerStream) error {
			d, _ := ss.Context().Deadline()
			fmt.Println("stream handler gives up", incoming.Sub(d), "before its caller")
			return nil
		})
	// Output:
	// stream handler gives up 50ms before its caller
}

type exampleServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *exampleServerStream) Context() context.Context { return s.ctx }

// A method whose calls take 20 ms: once three have succeeded, a call with
// 10 ms left, a budget passed on nearly spent, is failed at once instead
// of timing out at the server, where the breaker, the throttle and outlier
// ejection would count it against a healthy target.
func ExampleWithLearnedFloor() {
	fc := clock.NewFake(time.Now().Add(time.Hour).Truncate(time.Second))
	dl, err := deadline.New(deadline.WithClock(fc), deadline.WithLearnedFloor(true))
	if err != nil {
		log.Fatal(err)
	}
	unary := dl.UnaryClientInterceptor()
	takes20ms := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		fc.Advance(20 * time.Millisecond)
		return nil
	}
	call := func(budget time.Duration) error {
		ctx, cancel := context.WithDeadline(context.Background(), fc.Now().Add(budget))
		defer cancel()
		return unary(ctx, "/shop.v1.Catalog/GetItem", nil, nil, nil, takes20ms)
	}
	for range 3 {
		fmt.Println(call(time.Second))
	}
	fmt.Println(status.Convert(call(10 * time.Millisecond)).Message())
	// Output:
	// <nil>
	// <nil>
	// <nil>
	// failsoft: deadline: 10ms of budget left for /shop.v1.Catalog/GetItem, and none of its recent calls succeeded in less than 20ms; the call was not sent
}
