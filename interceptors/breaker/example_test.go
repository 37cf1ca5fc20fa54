package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// failing is an invoker standing in for a payment gateway that is down.
func failing(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return status.Error(codes.Unavailable, "connection refused")
}

func ExampleNew() {
	// The payment gateway's rule: trip after 5 failures in 30 seconds.
	b, err := breaker.New(breaker.FailuresWithin(5, 30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("dns:///payments.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(b.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(b.StreamClientInterceptor()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	fmt.Println(cc.Target())
	// Output: dns:///payments.internal:443
}

func ExampleInterceptor_UnaryClientInterceptor() {
	clk := clock.NewFake(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC))
	b, _ := breaker.New(breaker.WithClock(clk), breaker.ConsecutiveFailures(2),
		breaker.OpenFor(5*time.Second, 5*time.Second),
		// Open periods are drawn between half and all of OpenFor; a fixed
		// draw keeps this example's output the same.
		breaker.WithRand(func() float64 { return 0.5 }))
	unary := b.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///payments.internal:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()

	for range 3 {
		err := unary(context.Background(), "/payments.v1.Payments/Charge", nil, nil, cc, failing)
		fmt.Println(errors.Is(err, breaker.ErrOpen), status.Convert(err).Message())
	}
	// Output:
	// false connection refused
	// false connection refused
	// true failsoft: breaker: dns:///payments.internal:443 /payments.v1.Payments/Charge is open (2 consecutive failures); it probes again at 15:04:08.750Z, 3.75s after it opened
}

func ExampleInterceptor_StreamClientInterceptor() {
	b, _ := breaker.New()
	// Streams count with their final status: chain the stream interceptor
	// next to the unary one.
	_ = grpc.WithChainStreamInterceptor(b.StreamClientInterceptor())
}

func ExampleOnStateChange() {
	clk := clock.NewFake(time.Unix(0, 0))
	b, _ := breaker.New(breaker.WithClock(clk), breaker.ConsecutiveFailures(3), breaker.PerTarget(),
		breaker.WithRand(func() float64 { return 0 }),
		breaker.OnStateChange(func(c breaker.Change) {
			fmt.Printf("%s: %v -> %v (%s, %d failures in a row), open for %v\n",
				c.Target, c.From, c.To, c.Reason, c.Counts.ConsecutiveFailures, c.OpenFor)
		}))
	unary := b.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///notifications:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	for range 3 {
		_ = unary(context.Background(), "/n.v1.Notify/Send", nil, nil, cc, failing)
	}
	// Output: dns:///notifications:443: closed -> open (3 consecutive failures, 3 failures in a row), open for 1s
}

func ExampleInterceptor_Snapshots() {
	b, _ := breaker.New()
	unary := b.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///search:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	_ = unary(context.Background(), "/search.v1.Search/Query", nil, nil, cc, failing)
	for _, s := range b.Snapshots() {
		fmt.Println(s.Target, s.State, s.Counts.Requests, s.Counts.Failures)
	}
	state, _ := b.State("dns:///search:443", "/search.v1.Search/Query")
	fmt.Println(state)
	// Output:
	// dns:///search:443 closed 1 1
	// closed
}

func ExampleWithClassifier() {
	// Treat RESOURCE_EXHAUSTED as an outage rather than overload, so that
	// it trips the breaker too.
	b, err := breaker.New(breaker.WithClassifier(outcome.Default.With(codes.ResourceExhausted, outcome.Failure)))
	fmt.Println(b != nil, err)
	// Output: true <nil>
}

func ExampleFailureRate() {
	// Half of the calls of the last 10 seconds, once there were 50.
	_, err := breaker.New(breaker.FailureRate(0.5), breaker.TimeWindow(10*time.Second), breaker.MinimumCalls(50),
		breaker.SlowCallRate(0.8, 2*time.Second), breaker.OpenFor(10*time.Second, 2*time.Minute))
	fmt.Println(err)
	_, err = breaker.New(breaker.FailureRate(2))
	fmt.Println(err)
	// Output:
	// <nil>
	// breaker.FailureRate(2): must be in (0, 1]
}

func ExampleFailuresWithin() {
	clk := clock.NewFake(time.Unix(0, 0))
	b, _ := breaker.New(breaker.WithClock(clk), breaker.FailuresWithin(5, 30*time.Second))
	unary := b.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///payments.internal:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	const method = "/payments.v1.Payments/Charge"
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	// 5 failures among 100 calls in 10 s: a flaky target, not a dead one.
	for i := range 100 {
		if i%20 == 0 {
			_ = unary(context.Background(), method, nil, nil, cc, failing)
		} else {
			_ = unary(context.Background(), method, nil, nil, cc, ok)
		}
		clk.Advance(100 * time.Millisecond)
	}
	state, _ := b.State(cc.Target(), method)
	fmt.Println(state)
	// 30 s later, 5 failures are all the target answers.
	clk.Advance(30 * time.Second)
	for range 5 {
		_ = unary(context.Background(), method, nil, nil, cc, failing)
	}
	state, _ = b.State(cc.Target(), method)
	fmt.Println(state)
	// Output:
	// closed
	// open
}

func ExampleDeadAfter() {
	clk := clock.NewFake(time.Unix(0, 0))
	// 10 failed attempts in a row, the first at least 200 ms before the
	// last, open the breaker.
	b, _ := breaker.New(breaker.WithClock(clk), breaker.DeadAfter(10, 200*time.Millisecond))
	unary := b.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///payments.internal:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	const method = "/payments.v1.Payments/GetPayment"
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	// A long healthy history, which the default rate rule weighs...
	for range 100 {
		_ = unary(context.Background(), method, nil, nil, cc, ok)
	}
	// ...and a burst of 30 calls that fail together, then an answer...
	for range 30 {
		_ = unary(context.Background(), method, nil, nil, cc, failing)
	}
	_ = unary(context.Background(), method, nil, nil, cc, ok)
	state, _ := b.State(cc.Target(), method)
	fmt.Println(state)
	// ...does not keep a target that answers nothing for 200 ms in use.
	for range 10 {
		clk.Advance(25 * time.Millisecond)
		_ = unary(context.Background(), method, nil, nil, cc, failing)
	}
	state, _ = b.State(cc.Target(), method)
	fmt.Println(state)
	// Output:
	// closed
	// open
}

func ExamplePerTarget() {
	// One breaker per target, shared by its methods: a target that is down
	// is cut off for every method after one trip.
	_, err := breaker.New(breaker.PerTarget(), breaker.ConsecutiveFailures(10))
	fmt.Println(err)
	// Output: <nil>
}

func ExampleCountEveryAttempt() {
	// Count every failed attempt, including those the retry layer retries.
	_, err := breaker.New(breaker.CountEveryAttempt())
	fmt.Println(err)
	// Output: <nil>
}

func ExampleWithMaxTargets() {
	// A client of many short-lived backends keeps about 10,000 breakers.
	_, err := breaker.New(breaker.WithMaxTargets(10_000))
	fmt.Println(err)
	_, err = breaker.New(breaker.WithMaxTargets(0))
	fmt.Println(err)
	// Output:
	// <nil>
	// breaker.WithMaxTargets(0): must be at least 1
}

func ExampleWithRand() {
	// A seeded source makes the open periods of a test repeatable.
	r := rand.New(rand.NewPCG(1, 2))
	_, err := breaker.New(breaker.WithRand(r.Float64))
	fmt.Println(err)
	// Output: <nil>
}

func ExampleMinFailureRate() {
	// Trip on 5 failures in 30 s when they are at least half of the calls.
	_, err := breaker.New(breaker.FailuresWithin(5, 30*time.Second), breaker.MinFailureRate(0.5))
	fmt.Println(err)
	// Output: <nil>
}
