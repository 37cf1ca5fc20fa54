package breaker_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// testServer answers every call with the code it is set to, and counts the
// calls that reach it.
type testServer struct {
	policytestv1.UnimplementedPlainServiceServer
	policytestv1.UnimplementedTunedServiceServer
	code atomic.Uint32
	hits atomic.Int64
}

func (s *testServer) answer() error {
	s.hits.Add(1)
	if c := codes.Code(s.code.Load()); c != codes.OK {
		return status.Error(c, "server says "+c.String())
	}
	return nil
}

func (s *testServer) Plain(_ context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	if err := s.answer(); err != nil {
		return nil, err
	}
	return &policytestv1.PingResponse{Payload: r.GetPayload()}, nil
}

func (s *testServer) Watch(r *policytestv1.PingRequest, stream grpc.ServerStreamingServer[policytestv1.PingResponse]) error {
	for range 2 {
		if err := stream.Send(&policytestv1.PingResponse{Payload: r.GetPayload()}); err != nil {
			return err
		}
	}
	return s.answer()
}

// startServer serves a testServer on 127.0.0.1 and returns a client
// connection through the breaker.
func startServer(t *testing.T, ic *breaker.Interceptor) (*testServer, *grpc.ClientConn) {
	t.Helper()
	ts := &testServer{}
	addr := testserver.Serve(t, testserver.Policytest(ts))
	return ts, testserver.Dial(t, addr, testserver.Through(ic)...)
}

func TestIntegrationTripProbeRecover(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	var changes []string
	ic, err := breaker.New(breaker.WithClock(clk), breaker.FailuresWithin(5, 30*time.Second), breaker.HalfOpenProbes(2),
		breaker.OpenFor(5*time.Second, 20*time.Second),
		breaker.OnStateChange(func(c breaker.Change) { changes = append(changes, c.To.String()) }))
	if err != nil {
		t.Fatal(err)
	}
	ts, cc := startServer(t, ic)
	client := policytestv1.NewPlainServiceClient(cc)
	ctx := context.Background()

	ts.code.Store(uint32(codes.Unavailable))
	for i := range 5 {
		clk.Advance(time.Second)
		if _, err := client.Plain(ctx, &policytestv1.PingRequest{}); status.Code(err) != codes.Unavailable || errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Open: fails at once, without reaching the server.
	hits := ts.hits.Load()
	_, err = client.Plain(ctx, &policytestv1.PingRequest{})
	if !errors.Is(err, breaker.ErrOpen) || status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), cc.Target()) {
		t.Fatalf("open breaker: %v", err)
	}
	if ts.hits.Load() != hits {
		t.Fatal("an open breaker reached the server")
	}
	// Half-open: a failed probe reopens for longer.
	clk.Advance(5 * time.Second)
	if _, err := client.Plain(ctx, &policytestv1.PingRequest{}); errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("probe rejected: %v", err)
	}
	clk.Advance(5 * time.Second)
	if _, err := client.Plain(ctx, &policytestv1.PingRequest{}); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("reopened breaker let a call through after 5s: %v", err)
	}
	// Recovery: two good probes close it.
	ts.code.Store(uint32(codes.OK))
	clk.Advance(5 * time.Second)
	for i := range 3 {
		if r, err := client.Plain(ctx, &policytestv1.PingRequest{Payload: "hi"}); err != nil || r.GetPayload() != "hi" {
			t.Fatalf("call %d after recovery: %v", i, err)
		}
	}
	if got := strings.Join(changes, " "); got != "open half-open open half-open closed" {
		t.Fatalf("changes: %s", got)
	}
}

func TestIntegrationStreams(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	ic, err := breaker.New(breaker.WithClock(clk), breaker.ConsecutiveFailures(2), breaker.PerTarget(), breaker.WithRand(func() float64 { return 0 }))
	if err != nil {
		t.Fatal(err)
	}
	ts, cc := startServer(t, ic)
	client := policytestv1.NewTunedServiceClient(cc)
	ctx := context.Background()
	drain := func() (int, error) {
		s, err := client.Watch(ctx, &policytestv1.PingRequest{Payload: "w"})
		if err != nil {
			return 0, err
		}
		n := 0
		for {
			if _, err := s.Recv(); err != nil {
				if err == io.EOF {
					return n, nil
				}
				return n, err
			}
			n++
		}
	}
	// The final status of a stream counts, after its messages arrived.
	ts.code.Store(uint32(codes.Internal))
	for range 2 {
		if n, err := drain(); n != 2 || status.Code(err) != codes.Internal {
			t.Fatalf("stream: %d messages, %v", n, err)
		}
	}
	if s, _ := ic.State(cc.Target(), ""); s != breaker.Open {
		t.Fatalf("state %v", s)
	}
	// Opening a stream against an open breaker fails at once.
	if _, err := client.Watch(ctx, &policytestv1.PingRequest{}); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("open: %v", err)
	}
	// A successful stream is a successful probe.
	ts.code.Store(uint32(codes.OK))
	clk.Advance(breaker.DefaultOpenFor)
	if n, err := drain(); n != 2 || err != nil {
		t.Fatalf("probe stream: %d, %v", n, err)
	}
	if s, _ := ic.State(cc.Target(), ""); s != breaker.Closed {
		t.Fatalf("state after a good probe %v", s)
	}
	// An abandoned probe stream gives its slot back when its context ends.
	ts.code.Store(uint32(codes.Internal))
	drain()
	drain()
	clk.Advance(breaker.DefaultOpenFor)
	sctx, cancel := context.WithCancel(ctx)
	if _, err := client.Watch(sctx, &policytestv1.PingRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Watch(ctx, &policytestv1.PingRequest{}); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("second probe while one is in flight: %v", err)
	}
	cancel()
	ts.code.Store(uint32(codes.OK))
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The slot is given back by context.AfterFunc, asynchronously.
		n, err := drain()
		if err == nil && n == 2 {
			break
		}
		if !errors.Is(err, breaker.ErrOpen) || time.Now().After(deadline) {
			t.Fatalf("after abandoning a probe: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}
