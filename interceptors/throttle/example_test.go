package throttle_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/throttle"
)

// shedding is an invoker standing in for a server that refuses every call
// with RESOURCE_EXHAUSTED.
func shedding(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return status.Error(codes.ResourceExhausted, "server busy")
}

func dial(target string) *grpc.ClientConn {
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	return cc
}

func ExampleNew() {
	t, err := throttle.New(
		throttle.WithMultiplier(2),             // send up to 2x what the target accepts
		throttle.WithMaxProbability(0.9),       // always let 10% through
		throttle.WithWindow(2*time.Minute, 10), // over the last two minutes
		throttle.WithObserver(nil),             // or telemetry's observer
	)
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("dns:///payments.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Inside the retry layer, so that every attempt is throttled.
		grpc.WithChainUnaryInterceptor(t.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(t.StreamClientInterceptor()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()

	// Invalid options are refused, by name.
	_, err = throttle.New(throttle.WithMultiplier(0.5))
	fmt.Println(err)
	// Output:
	// throttle.WithMultiplier(0.5): K must be a finite number of at least 1
}

func ExampleInterceptor_UnaryClientInterceptor() {
	// A fake clock and a fixed draw make the example deterministic; by
	// default the throttle uses the system clock and math/rand/v2.
	t, _ := throttle.New(
		throttle.WithClock(clock.NewFake(time.Unix(0, 0))),
		throttle.WithRand(func() float64 { return 0.6 }),
	)
	unary := t.UnaryClientInterceptor()
	cc := dial("passthrough:///payments")
	defer cc.Close()

	for i := range 4 {
		err := unary(context.Background(), "/payments.v1.Payments/Get", nil, nil, cc, shedding)
		if rej, ok := outcome.AsRejection(err); ok {
			fmt.Printf("call %d: %s: %s\n", i+1, rej.Layer, status.Convert(err).Message())
		} else {
			fmt.Printf("call %d: sent: %v\n", i+1, status.Code(err))
		}
	}
	// Output:
	// call 1: sent: ResourceExhausted
	// call 2: sent: ResourceExhausted
	// call 3: throttle: failsoft: throttle: call to passthrough:///payments rejected locally with probability 0.67: the target accepted 0 of the last 2 requests in 2m0s
	// call 4: throttle: failsoft: throttle: call to passthrough:///payments rejected locally with probability 0.75: the target accepted 0 of the last 3 requests in 2m0s
}

// eof is a stream that ends at once, with OK.
type eof struct{ grpc.ClientStream }

func (eof) RecvMsg(any) error { return io.EOF }

func ExampleInterceptor_StreamClientInterceptor() {
	t, _ := throttle.New(throttle.WithClock(clock.NewFake(time.Unix(0, 0))))
	intercept := t.StreamClientInterceptor()
	cc := dial("passthrough:///feeds")
	defer cc.Close()

	desc := &grpc.StreamDesc{ServerStreams: true}
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return eof{}, nil
	}
	stream, err := intercept(context.Background(), desc, cc, "/feeds.v1.Feeds/Watch", streamer)
	if err != nil {
		log.Fatal(err)
	}
	// The stream counts when the caller sees its final status.
	fmt.Println(t.State(cc.Target()))
	fmt.Println(stream.RecvMsg(nil))
	fmt.Println(t.State(cc.Target()))
	// Output:
	// {0 0 0}
	// EOF
	// {1 1 0}
}

func ExampleInterceptor_State() {
	t, _ := throttle.New(throttle.WithClock(clock.NewFake(time.Unix(0, 0))), throttle.WithRand(func() float64 { return 0.99 }))
	unary := t.UnaryClientInterceptor()
	cc := dial("passthrough:///search")
	defer cc.Close()
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	for range 2 {
		unary(context.Background(), "/search.v1.Search/Query", nil, nil, cc, ok)
	}
	for range 4 {
		unary(context.Background(), "/search.v1.Search/Query", nil, nil, cc, shedding)
	}
	s := t.State(cc.Target())
	fmt.Printf("%d requests, %d accepted, rejecting %.0f%%\n", s.Requests, s.Accepts, 100*s.Probability)
	// Output:
	// 6 requests, 2 accepted, rejecting 29%
}

func ExampleWithClassifier() {
	// These servers answer "try later" with ABORTED: count it as overload.
	cl := outcome.Default.With(codes.Aborted, outcome.Overload)
	t, _ := throttle.New(throttle.WithClassifier(cl), throttle.WithClock(clock.NewFake(time.Unix(0, 0))))
	unary := t.UnaryClientInterceptor()
	cc := dial("passthrough:///inventory")
	defer cc.Close()
	aborted := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Aborted, "try later")
	}
	unary(context.Background(), "/inventory.v1.Stock/Reserve", nil, nil, cc, aborted)
	fmt.Println(t.State(cc.Target()))
	// Output:
	// {1 0 0.5}
}

func ExampleWithFailuresAsRejects() {
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	// A server that answers some calls and sheds others with a plain
	// UNAVAILABLE, as proxies and concurrency limiters do.
	shed := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "upstream overflow")
	}
	cc := dial("passthrough:///ledger")
	defer cc.Close()
	for _, rejects := range []bool{true, false} {
		t, _ := throttle.New(throttle.WithFailuresAsRejects(rejects), throttle.WithClock(clock.NewFake(time.Unix(0, 0))))
		unary := t.UnaryClientInterceptor()
		for range 20 {
			unary(context.Background(), "/ledger.v1.Ledger/Get", nil, nil, cc, ok)
		}
		for range 30 {
			unary(context.Background(), "/ledger.v1.Ledger/Get", nil, nil, cc, shed)
		}
		s := t.State(cc.Target())
		fmt.Printf("%v: %d requests, %d accepted, p = %.2f\n", rejects, s.Requests, s.Accepts, s.Probability)
	}
	// Output:
	// true: 50 requests, 20 accepted, p = 0.20
	// false: 50 requests, 50 accepted, p = 0.00
}

func ExampleWithObserver() {
	obs := observe.Func(func(_ context.Context, e observe.Event) {
		fmt.Printf("%s %s %s p=%.2f\n", e.Kind, e.Target, e.Method, e.Value)
	})
	t, _ := throttle.New(throttle.WithObserver(obs), throttle.WithRand(func() float64 { return 0 }),
		throttle.WithClock(clock.NewFake(time.Unix(0, 0))))
	unary := t.UnaryClientInterceptor()
	cc := dial("passthrough:///maps")
	defer cc.Close()
	for range 2 {
		unary(context.Background(), "/maps.v1.Maps/Route", nil, nil, cc, shedding)
	}
	// Output:
	// throttled passthrough:///maps /maps.v1.Maps/Route p=0.50
}

func ExampleWithWindow() {
	// A shorter window follows a server's capacity faster, on less evidence.
	_, err := throttle.New(throttle.WithWindow(30*time.Second, 6)) // 5 s buckets
	fmt.Println(err)
	_, err = throttle.New(throttle.WithWindow(time.Millisecond, 10))
	fmt.Println(err)
	// Output:
	// <nil>
	// throttle.WithWindow(1ms, 10): each bucket (window/buckets) must span at least 1ms
}
