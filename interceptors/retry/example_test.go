package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// flakyServer fails the first failFirst attempts of every call with
// UNAVAILABLE and counts the attempts it sees.
type flakyServer struct {
	pb.UnimplementedPlainServiceServer
	pb.UnimplementedTunedServiceServer
	failFirst int64
	attempts  atomic.Int64
}

func (s *flakyServer) answer(payload string) (*pb.PingResponse, error) {
	if s.attempts.Add(1) <= s.failFirst {
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	return &pb.PingResponse{Payload: payload}, nil
}

func (s *flakyServer) Idempotent(_ context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.answer(r.GetPayload())
}

func (s *flakyServer) Plain(_ context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.answer(r.GetPayload())
}

func (s *flakyServer) Watch(r *pb.PingRequest, ss grpc.ServerStreamingServer[pb.PingResponse]) error {
	out, err := s.answer(r.GetPayload())
	if err != nil {
		return err
	}
	return ss.Send(out)
}

// dial starts srv on an in-memory listener and returns a client through
// the interceptor. Examples pass retry.WithRand so that backoff waits are
// zero and the output is the same on every run.
func dial(srv *flakyServer, ic *retry.Interceptor) (conn *grpc.ClientConn, stop func()) {
	lis := bufconn.Listen(1 << 16)
	s := grpc.NewServer()
	pb.RegisterPlainServiceServer(s, srv)
	pb.RegisterTunedServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///example",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(), // attempts are this interceptor's alone
		grpc.WithChainUnaryInterceptor(ic.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(ic.StreamClientInterceptor()),
	)
	if err != nil {
		log.Fatal(err)
	}
	return conn, func() { _ = conn.Close(); s.Stop() }
}

func noJitter() float64 { return 0 }

func Example() {
	ic, err := retry.New(retry.WithRand(noJitter))
	if err != nil {
		log.Fatal(err)
	}
	srv := &flakyServer{failFirst: 2}
	conn, stop := dial(srv, ic)
	defer stop()

	// PlainService.Idempotent is `option idempotency_level = IDEMPOTENT`:
	// retried, up to 3 attempts by default.
	out, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{Payload: "hello"})
	fmt.Println(out.GetPayload(), err, srv.attempts.Load())

	// PlainService.Plain says nothing: one attempt.
	srv.attempts.Store(0)
	_, err = pb.NewPlainServiceClient(conn).Plain(context.Background(), &pb.PingRequest{})
	fmt.Println(status.Code(err), srv.attempts.Load())
	// Output:
	// hello <nil> 3
	// Unavailable 1
}

func ExampleNew() {
	// Options are validated; the error names the bad one.
	_, err := retry.New(retry.WithBudget(retry.Budget{Ratio: 2}))
	fmt.Println(err)
	// Output:
	// retry.WithBudget: Ratio must be in (0, 1], got 2
}

func ExampleInterceptor_UnaryClientInterceptor() {
	ic, _ := retry.New(retry.WithRand(noJitter))
	srv := &flakyServer{failFirst: 1}
	conn, stop := dial(srv, ic)
	defer stop()
	out, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{Payload: "ok"})
	fmt.Println(out.GetPayload(), err, srv.attempts.Load())
	// Output:
	// ok <nil> 2
}

func ExampleInterceptor_StreamClientInterceptor() {
	ic, _ := retry.New(retry.WithRand(noJitter))
	srv := &flakyServer{failFirst: 1}
	conn, stop := dial(srv, ic)
	defer stop()
	// TunedService.Watch is a NO_SIDE_EFFECTS server stream: the first
	// attempt failed before any message reached the caller, so it is
	// retried.
	s, err := pb.NewTunedServiceClient(conn).Watch(context.Background(), &pb.PingRequest{Payload: "event"})
	if err != nil {
		log.Fatal(err)
	}
	for {
		m, err := s.Recv()
		if err == io.EOF {
			break
		}
		fmt.Println(m.GetPayload(), err)
	}
	fmt.Println(srv.attempts.Load())
	// Output:
	// event <nil>
	// 2
}

func ExampleWithMax() {
	ic, _ := retry.New(retry.WithRand(noJitter))
	srv := &flakyServer{failFirst: 4}
	conn, stop := dial(srv, ic)
	defer stop()
	// Five attempts for this call; it counts the first.
	_, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{}, retry.WithMax(5))
	fmt.Println(err, srv.attempts.Load())
	// Output:
	// <nil> 5
}

func ExampleDisable() {
	ic, _ := retry.New(retry.WithRand(noJitter))
	srv := &flakyServer{failFirst: 1}
	conn, stop := dial(srv, ic)
	defer stop()
	_, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{}, retry.Disable())
	fmt.Println(status.Code(err), srv.attempts.Load())
	// Output:
	// Unavailable 1
}

func ExampleWithAttemptTimeout() {
	ic, _ := retry.New()
	srv := &flakyServer{}
	conn, stop := dial(srv, ic)
	defer stop()
	// Each attempt gets at most 200 ms, inside the call's own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	out, err := pb.NewPlainServiceClient(conn).Idempotent(ctx, &pb.PingRequest{Payload: "quick"}, retry.WithAttemptTimeout(200*time.Millisecond))
	fmt.Println(out.GetPayload(), err)
	// Output:
	// quick <nil>
}

func ExampleWithBackoff() {
	ic, _ := retry.New(retry.WithRand(func() float64 { return 0.5 }))
	srv := &flakyServer{failFirst: 1}
	conn, stop := dial(srv, ic)
	defer stop()
	// Waits are drawn from [0, min(100ms, 2ms * 3^(n-1))); the fixed
	// random number 0.5 makes the first wait 1 ms.
	_, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{}, retry.WithBackoff(2*time.Millisecond, 100*time.Millisecond, 3))
	fmt.Println(err, srv.attempts.Load())
	// Output:
	// <nil> 2
}

func ExampleWithBudget() {
	// A tiny budget: one token, and a call adds a hundredth of one.
	ic, _ := retry.New(retry.WithRand(noJitter), retry.WithBudget(retry.Budget{Ratio: 0.01, MinPerSecond: 0.1, TTL: 10 * time.Second}))
	srv := &flakyServer{failFirst: 1 << 30} // a total outage
	conn, stop := dial(srv, ic)
	defer stop()
	client := pb.NewPlainServiceClient(conn)
	for i := range 3 {
		_, err := client.Idempotent(context.Background(), &pb.PingRequest{})
		var se *retry.StopError
		if errors.As(err, &se) {
			fmt.Printf("call %d: %s after %d attempt(s): %v\n", i+1, se.Reason, se.Attempts, status.Code(err))
		} else {
			fmt.Printf("call %d: %v\n", i+1, status.Code(err))
		}
	}
	fmt.Println("attempts:", srv.attempts.Load())
	// Output:
	// call 1: budget after 2 attempt(s): Unavailable
	// call 2: budget after 1 attempt(s): Unavailable
	// call 3: budget after 1 attempt(s): Unavailable
	// attempts: 4
}

func ExampleWithoutBudget() {
	ic, _ := retry.New(retry.WithRand(noJitter), retry.WithoutBudget())
	srv := &flakyServer{failFirst: 1 << 30}
	conn, stop := dial(srv, ic)
	defer stop()
	_, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{})
	fmt.Println(status.Code(err), srv.attempts.Load())
	// Output:
	// Unavailable 3
}

func ExampleWithResolver() {
	// Make a method of a service that cannot be annotated retryable.
	r, err := policy.New(policy.WithMethod("/failsoft.policytest.v1.PlainService/Plain", &failsoftv1.MethodPolicy{
		Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT,
	}))
	if err != nil {
		log.Fatal(err)
	}
	ic, _ := retry.New(retry.WithResolver(r), retry.WithRand(noJitter))
	srv := &flakyServer{failFirst: 1}
	conn, stop := dial(srv, ic)
	defer stop()
	_, err = pb.NewPlainServiceClient(conn).Plain(context.Background(), &pb.PingRequest{})
	fmt.Println(err, srv.attempts.Load())
	// Output:
	// <nil> 2
}

func ExampleWithObserver() {
	obs := observe.Func(func(_ context.Context, e observe.Event) {
		switch e.Kind {
		case observe.AttemptEnd:
			fmt.Println(e.Kind, e.Attempt, status.Code(e.Err))
		case observe.Backoff:
			fmt.Println(e.Kind, e.Attempt, e.Reason)
		}
	})
	ic, _ := retry.New(retry.WithObserver(obs), retry.WithRand(noJitter))
	srv := &flakyServer{failFirst: 1}
	conn, stop := dial(srv, ic)
	defer stop()
	_, _ = pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{})
	// Output:
	// attempt_end 1 Unavailable
	// backoff 2 policy
	// attempt_end 2 OK
}

func ExampleWithClock() {
	// Tests drive backoff waits with a fake clock instead of sleeping.
	fake := clock.NewFake(time.Now())
	ic, _ := retry.New(retry.WithClock(fake), retry.WithRand(func() float64 { return 0.5 }))
	srv := &flakyServer{failFirst: 1}
	conn, stop := dial(srv, ic)
	defer stop()
	done := make(chan error)
	go func() {
		_, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{})
		done <- err
	}()
	fake.BlockUntil(1)                  // the backoff has started
	fake.Advance(25 * time.Millisecond) // half of the 50 ms initial backoff
	fmt.Println(<-done, srv.attempts.Load())
	// Output:
	// <nil> 2
}

func ExampleWithRand() {
	// A fixed jitter makes waits predictable: 0 means retry at once.
	ic, _ := retry.New(retry.WithRand(func() float64 { return 0 }))
	srv := &flakyServer{failFirst: 2}
	conn, stop := dial(srv, ic)
	defer stop()
	_, err := pb.NewPlainServiceClient(conn).Idempotent(context.Background(), &pb.PingRequest{})
	fmt.Println(err, srv.attempts.Load())
	// Output:
	// <nil> 3
}

func ExampleWithReplayBuffer() {
	// Streams keep up to 1 MiB of sent messages for replay.
	_, err := retry.New(retry.WithReplayBuffer(1 << 20))
	fmt.Println(err)
	_, err = retry.New(retry.WithReplayBuffer(-1))
	fmt.Println(err)
	// Output:
	// <nil>
	// retry.WithReplayBuffer: must be between 0 and 64 MiB, got -1
}

func ExampleStopError() {
	ic, _ := retry.New(retry.WithRand(func() float64 { return 0.99 }))
	srv := &flakyServer{failFirst: 1 << 30}
	conn, stop := dial(srv, ic)
	defer stop()
	// 10 s left, and the next wait would be about a minute: there is no
	// time for a retry, and the error says so at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pb.NewPlainServiceClient(conn).Idempotent(ctx, &pb.PingRequest{}, retry.WithBackoff(time.Minute, time.Minute, 1))
	var se *retry.StopError
	if errors.As(err, &se) {
		fmt.Println(se.Reason, se.Attempts, status.Code(err))
	}
	// Output:
	// deadline 1 Unavailable
}
