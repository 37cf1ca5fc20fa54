package fallback_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	_ "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1" // broken policies, for TestInvalidPolicy
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	readMethod  = "/failsoft.policytest.v1.PlainService/NoSideEffects"
	plainMethod = "/failsoft.policytest.v1.PlainService/Plain"
)

// newConn returns a ClientConn that is never connected: the interceptors
// only read its Target.
func newConn(t testing.TB) *grpc.ClientConn { return testserver.Dial(t, "passthrough:///catalog") }

// answering returns an invoker that answers with payload, or fails with
// code.
func answering(code codes.Code, payload string) grpc.UnaryInvoker {
	return func(_ context.Context, _ string, _, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		if code != codes.OK {
			return status.Error(code, "server says no")
		}
		reply.(*pb.PingResponse).Payload = payload
		return nil
	}
}

func TestLevelsInOrder(t *testing.T) {
	var fnOK atomic.Bool
	fn := fallback.Typed(func(_ context.Context, req *pb.PingRequest, cause error) (*pb.PingResponse, error) {
		if !fnOK.Load() {
			return nil, errors.New("no plan B today")
		}
		return &pb.PingResponse{Payload: "function:" + req.GetPayload() + ":" + status.Code(cause).String()}, nil
	})
	clk := clock.NewFake(time.Unix(0, 0))
	var events []observe.Event
	ic, err := fallback.New(fallback.WithClock(clk),
		fallback.WithFunc(readMethod, fn), fallback.WithCache(readMethod), fallback.WithStatic(readMethod, &pb.PingResponse{Payload: "static"}),
		fallback.CacheLimits(10, time.Minute),
		fallback.WithObserver(observe.Func(func(_ context.Context, e observe.Event) { events = append(events, e) })))
	if err != nil {
		t.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	cc := newConn(t)
	call := func(inv grpc.UnaryInvoker, payload string) (string, fallback.Level, metadata.MD, error) {
		var level fallback.Level
		var md metadata.MD
		reply := &pb.PingResponse{}
		err := unary(context.Background(), readMethod, &pb.PingRequest{Payload: payload}, reply, cc, inv, grpc.Header(&md), fallback.Report(&level))
		return reply.GetPayload(), level, md, err
	}
	tests := []struct {
		name     string
		inv      grpc.UnaryInvoker
		fnOK     bool
		advance  time.Duration
		payload  string
		want     string
		level    fallback.Level
		wantCode codes.Code
	}{
		{"server answers", answering(codes.OK, "fresh"), false, 0, "a", "fresh", fallback.None, codes.OK},
		{"static when nothing cached", answering(codes.Unavailable, ""), false, 0, "b", "static", fallback.Static, codes.OK},
		{"cache for the same request", answering(codes.Unavailable, ""), false, 0, "a", "fresh", fallback.Cache, codes.OK},
		{"function first", answering(codes.Internal, ""), true, 0, "a", "function:a:Internal", fallback.Function, codes.OK},
		{"caller errors are returned", answering(codes.NotFound, ""), true, 0, "a", "", fallback.None, codes.NotFound},
		{"stale cache is skipped", answering(codes.Unavailable, ""), false, 2 * time.Minute, "a", "static", fallback.Static, codes.OK},
	}
	for _, tc := range tests {
		fnOK.Store(tc.fnOK)
		clk.Advance(tc.advance)
		got, level, md, err := call(tc.inv, tc.payload)
		if got != tc.want || level != tc.level || status.Code(err) != tc.wantCode {
			t.Errorf("%s: got %q %v %v, want %q %v %v", tc.name, got, level, err, tc.want, tc.level, tc.wantCode)
		}
		if fallback.FromHeader(md) != tc.level {
			t.Errorf("%s: header %v", tc.name, md)
		}
	}
	if len(events) != 4 || events[3].Reason != "static" || events[0].Kind != observe.Fallback || events[0].Reason != "static" || events[1].Reason != "cache" ||
		events[2].Reason != "function" || events[0].Target != cc.Target() || status.Code(events[0].Err) != codes.Unavailable {
		t.Errorf("events %+v", events)
	}
}

func TestNoChainNoChange(t *testing.T) {
	ic, err := fallback.New(fallback.WithStatic(readMethod, &pb.PingResponse{Payload: "static"}))
	if err != nil {
		t.Fatal(err)
	}
	err = ic.UnaryClientInterceptor()(context.Background(), plainMethod, &pb.PingRequest{}, &pb.PingResponse{}, newConn(t), answering(codes.Unavailable, ""))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a method without a chain: %v", err)
	}
}

func TestWhen(t *testing.T) {
	rej := &outcome.Rejection{Layer: "bulkhead", Code: codes.ResourceExhausted, Message: "full"}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		ctx  context.Context
		err  error
		want bool
	}{
		{context.Background(), rej, true},
		{cancelled, rej, true},
		{context.Background(), status.Error(codes.Unavailable, ""), true},
		{context.Background(), status.Error(codes.ResourceExhausted, ""), true},
		{context.Background(), status.Error(codes.DeadlineExceeded, ""), true},
		{cancelled, status.Error(codes.Unavailable, ""), false},
		{context.Background(), status.Error(codes.NotFound, ""), false},
		{context.Background(), status.Error(codes.Canceled, ""), false},
		{context.Background(), status.Error(codes.InvalidArgument, ""), false},
	}
	for _, tc := range tests {
		if got := fallback.DefaultWhen(tc.ctx, tc.err); got != tc.want {
			t.Errorf("DefaultWhen(%v) = %v", tc.err, got)
		}
	}
	// When replaces the default.
	ic, _ := fallback.New(fallback.WithStatic(plainMethod, &pb.PingResponse{Payload: "s"}),
		fallback.When(func(_ context.Context, err error) bool { return status.Code(err) == codes.NotFound }))
	reply := &pb.PingResponse{}
	if err := ic.UnaryClientInterceptor()(context.Background(), plainMethod, &pb.PingRequest{}, reply, newConn(t), answering(codes.NotFound, "")); err != nil || reply.Payload != "s" {
		t.Fatalf("custom When: %v %q", err, reply.Payload)
	}
}

func TestCacheOnlyWithoutSideEffects(t *testing.T) {
	if _, err := fallback.New(fallback.WithCache(plainMethod)); err == nil || !strings.Contains(err.Error(), "NO_SIDE_EFFECTS") {
		t.Fatalf("caching a method with side effects: %v", err)
	}
	// A service pattern caches only its methods without side effects.
	ic, err := fallback.New(fallback.WithCache("/failsoft.policytest.v1.PlainService/*"))
	if err != nil {
		t.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	cc := newConn(t)
	for _, m := range []string{plainMethod, readMethod} {
		_ = unary(context.Background(), m, &pb.PingRequest{}, &pb.PingResponse{}, cc, answering(codes.OK, "good"))
		reply := &pb.PingResponse{}
		err := unary(context.Background(), m, &pb.PingRequest{}, reply, cc, answering(codes.Unavailable, ""))
		if cached := err == nil && reply.Payload == "good"; cached != (m == readMethod) {
			t.Errorf("%s: cached=%v (err %v)", m, cached, err)
		}
	}
}

func TestStaticOfAnotherTypeIsSkipped(t *testing.T) {
	ic, _ := fallback.New(fallback.WithStatic(readMethod, &pb.PingRequest{Payload: "wrong type"}))
	err := ic.UnaryClientInterceptor()(context.Background(), readMethod, &pb.PingRequest{}, &pb.PingResponse{}, newConn(t), answering(codes.Unavailable, ""))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v", err)
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opt  fallback.Option
		want string
	}{
		{fallback.WithFunc("nope", func(context.Context, string, any, any, error) error { return nil }), `fallback.WithFunc("nope")`},
		{fallback.WithFunc(readMethod, nil), "nil function"},
		{fallback.WithStatic(readMethod, nil), "nil reply"},
		{fallback.WithCache("/x/*/y"), "fallback.WithCache"},
		{fallback.CacheLimits(0, time.Second), "fallback.CacheLimits(0, 1s)"},
		{fallback.When(nil), "fallback.When"},
		{fallback.WithResolver(nil), "fallback.WithResolver"},
		{fallback.WithClock(nil), "fallback.WithClock"},
	} {
		if _, err := fallback.New(tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func FuzzFromHeader(f *testing.F) {
	for _, s := range []string{"", "none", "cache", "static", "function", "bogus", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		l := fallback.FromHeader(metadata.Pairs(fallback.MetadataKey, v))
		if l != fallback.None && l.String() != v {
			t.Fatalf("%q parsed as %v", v, l)
		}
	})
}

// server answers NoSideEffects with the request's payload, or fails with
// its code.
type server struct {
	pb.UnimplementedPlainServiceServer
	code atomic.Uint32
	hits atomic.Int64
}

func (s *server) NoSideEffects(_ context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	s.hits.Add(1)
	if c := codes.Code(s.code.Load()); c != codes.OK {
		return nil, status.Error(c, "down")
	}
	return &pb.PingResponse{Payload: "server:" + r.GetPayload()}, nil
}

// Over a real server: fallback outside the breaker, levels in order as
// the breaker opens and the plans run out.
func TestIntegrationWithBreaker(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	br, err := breaker.New(breaker.WithClock(clk), breaker.ConsecutiveFailures(2))
	if err != nil {
		t.Fatal(err)
	}
	var fnOn atomic.Bool
	fb, err := fallback.New(fallback.WithClock(clk),
		fallback.WithFunc(readMethod, fallback.Typed(func(_ context.Context, req *pb.PingRequest, cause error) (*pb.PingResponse, error) {
			if !fnOn.Load() {
				return nil, cause
			}
			return &pb.PingResponse{Payload: "function:" + req.GetPayload()}, nil
		})),
		fallback.WithCache(readMethod),
		fallback.WithStatic(readMethod, &pb.PingResponse{Payload: "static"}))
	if err != nil {
		t.Fatal(err)
	}
	s := &server{}
	addr := testserver.Serve(t, func(srv *grpc.Server) { pb.RegisterPlainServiceServer(srv, s) })
	cc := testserver.Dial(t, addr, grpc.WithChainUnaryInterceptor(fb.UnaryClientInterceptor(), br.UnaryClientInterceptor()))
	client := pb.NewPlainServiceClient(cc)
	ask := func(payload string) (string, fallback.Level, error) {
		var md metadata.MD
		r, err := client.NoSideEffects(context.Background(), &pb.PingRequest{Payload: payload}, grpc.Header(&md))
		return r.GetPayload(), fallback.FromHeader(md), err
	}
	if got, l, err := ask("a"); err != nil || got != "server:a" || l != fallback.None {
		t.Fatalf("healthy: %q %v %v", got, l, err)
	}
	s.code.Store(uint32(codes.Unavailable))
	steps := []struct {
		payload string
		fnOn    bool
		want    string
		level   fallback.Level
	}{
		{"a", false, "server:a", fallback.Cache}, // failure 1, from cache
		{"b", false, "static", fallback.Static},  // failure 2 opens the breaker
		{"a", true, "function:a", fallback.Function},
		{"a", false, "server:a", fallback.Cache},
		{"c", false, "static", fallback.Static},
	}
	for i, st := range steps {
		fnOn.Store(st.fnOn)
		got, l, err := ask(st.payload)
		if err != nil || got != st.want || l != st.level {
			t.Fatalf("step %d: %q %v %v, want %q %v", i, got, l, err, st.want, st.level)
		}
	}
	if st, _ := br.State(cc.Target(), readMethod); st != breaker.Open || s.hits.Load() != 3 {
		t.Fatalf("breaker %v, server hits %d", st, s.hits.Load())
	}
}

func BenchmarkNoChain(b *testing.B) {
	ic, _ := fallback.New(fallback.WithStatic(readMethod, &pb.PingResponse{}))
	unary := ic.UnaryClientInterceptor()
	cc := newConn(b)
	ctx := context.Background()
	inv := answering(codes.OK, "x")
	req, reply := &pb.PingRequest{}, &pb.PingResponse{}
	b.ReportAllocs()
	for b.Loop() {
		_ = unary(ctx, plainMethod, req, reply, cc, inv)
	}
}

func BenchmarkStatic(b *testing.B) {
	ic, _ := fallback.New(fallback.WithStatic(readMethod, &pb.PingResponse{Payload: "static"}))
	unary := ic.UnaryClientInterceptor()
	cc := newConn(b)
	ctx := context.Background()
	inv := answering(codes.Unavailable, "")
	req, reply := &pb.PingRequest{}, &pb.PingResponse{}
	b.ReportAllocs()
	for b.Loop() {
		_ = unary(ctx, readMethod, req, reply, cc, inv)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	ic, _ := fallback.New(fallback.WithCache(readMethod))
	unary := ic.UnaryClientInterceptor()
	cc := newConn(b)
	ctx := context.Background()
	req, reply := &pb.PingRequest{Payload: "k"}, &pb.PingResponse{}
	_ = unary(ctx, readMethod, req, reply, cc, answering(codes.OK, "cached"))
	inv := answering(codes.Unavailable, "")
	b.ReportAllocs()
	for b.Loop() {
		_ = unary(ctx, readMethod, req, reply, cc, inv)
	}
}

// TestInvalidPolicy: a method whose policy is invalid fails with the
// policy's own error, which errors.As finds and which is FAILED_PRECONDITION.
func TestInvalidPolicy(t *testing.T) {
	ic, err := fallback.New(fallback.WithCache("/failsoft.policytest.broken.v1.BrokenService/*"))
	if err != nil {
		t.Fatal(err)
	}
	sent := false
	err = ic.UnaryClientInterceptor()(context.Background(), "/failsoft.policytest.broken.v1.BrokenService/ZeroTimeout",
		&pb.PingRequest{}, &pb.PingResponse{}, newConn(t), func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			sent = true
			return nil
		})
	var pe *policy.Error
	if !errors.As(err, &pe) || status.Code(err) != codes.FailedPrecondition || sent {
		t.Fatalf("err %v (sent %v), want the *policy.Error as FAILED_PRECONDITION", err, sent)
	}
}
