package deadline_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// serve starts a gRPC server on 127.0.0.1, stopped when the test ends.
func serve(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	register(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// dial connects to addr through the deadline interceptors (and any inner
// ones), closed when the test ends.
func dial(t *testing.T, addr string, dl *deadline.Interceptor, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(dl.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(dl.StreamClientInterceptor()),
	}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// rpcCounter is a client stats handler counting the calls gRPC started:
// a call failed fast never reaches it.
type rpcCounter struct{ begun atomic.Int32 }

func (c *rpcCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *rpcCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		c.begun.Add(1)
	}
}
func (c *rpcCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *rpcCounter) HandleConn(context.Context, stats.ConnStats)                       {}

// serviceB answers at once, or, for payload "block", when its deadline
// passes. It records the budget it was given.
type serviceB struct {
	pb.UnimplementedPlainServiceServer
	calls    atomic.Int32
	mu       sync.Mutex
	budget   time.Duration
	deadline time.Time
}

func (b *serviceB) Plain(ctx context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	b.calls.Add(1)
	d, ok := ctx.Deadline()
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "B: no deadline")
	}
	b.mu.Lock()
	b.budget, b.deadline = time.Until(d), d
	b.mu.Unlock()
	if req.GetPayload() == "block" {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &pb.PingResponse{Payload: "B"}, nil
}

// serviceA calls B with its incoming context and answers with B's answer,
// or with B's error prefixed by "service A".
type serviceA struct {
	pb.UnimplementedPlainServiceServer
	b pb.PlainServiceClient
}

func (a *serviceA) Plain(ctx context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	resp, err := a.b.Plain(ctx, req)
	if err != nil {
		s := status.Convert(err)
		return nil, status.Errorf(s.Code(), "service A: %s", s.Message())
	}
	return resp, nil
}

// threeHop is client -> A -> B on loopback. A runs the deadline server
// interceptors with the given margin, and calls B through the deadline
// client interceptors with the given minimum budget.
type threeHop struct {
	client  pb.PlainServiceClient
	counter *rpcCounter // calls the client sent
	b       *serviceB
	aCalls  atomic.Int32
	aEvents *recorder // A's client-side deadline events

	mu       sync.Mutex
	aBudget  time.Duration // budget A was given, read when its call arrived
	aDeadlin time.Time
}

func newThreeHop(t *testing.T, margin, aMinBudget, clientMinBudget time.Duration) *threeHop {
	h := &threeHop{counter: &rpcCounter{}, b: &serviceB{}, aEvents: &recorder{}}
	addrB := serve(t, func(s *grpc.Server) { pb.RegisterPlainServiceServer(s, h.b) })

	aClient, err := deadline.New(deadline.WithMinBudget(aMinBudget), deadline.WithObserver(h.aEvents))
	if err != nil {
		t.Fatal(err)
	}
	aServer, err := deadline.New(deadline.WithSafetyMargin(margin))
	if err != nil {
		t.Fatal(err)
	}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		h.aCalls.Add(1)
		if d, ok := ctx.Deadline(); ok {
			h.mu.Lock()
			h.aBudget, h.aDeadlin = time.Until(d), d
			h.mu.Unlock()
		}
		return handler(ctx, req)
	}
	a := &serviceA{b: pb.NewPlainServiceClient(dial(t, addrB, aClient))}
	addrA := serve(t, func(s *grpc.Server) { pb.RegisterPlainServiceServer(s, a) },
		grpc.ChainUnaryInterceptor(record, aServer.UnaryServerInterceptor()))

	client, err := deadline.New(deadline.WithMinBudget(clientMinBudget))
	if err != nil {
		t.Fatal(err)
	}
	h.client = pb.NewPlainServiceClient(dial(t, addrA, client, grpc.WithStatsHandler(h.counter)))
	return h
}

func TestThreeHopMargin(t *testing.T) {
	const margin = 500 * time.Millisecond
	h := newThreeHop(t, margin, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.client.Plain(ctx, &pb.PingRequest{})
	if err != nil || resp.GetPayload() != "B" {
		t.Fatalf("call through A to B: %v, %v", resp, err)
	}
	h.mu.Lock()
	aBudget, aDeadline := h.aBudget, h.aDeadlin
	h.mu.Unlock()
	h.b.mu.Lock()
	bBudget, bDeadline := h.b.budget, h.b.deadline
	h.b.mu.Unlock()
	// Budgets as each service saw them on arrival: B's is A's minus the
	// margin minus the time A spent before calling.
	if aBudget-bBudget < margin {
		t.Errorf("A was given %v, B %v: B's budget should be shorter by at least the %v margin", aBudget, bBudget, margin)
	}
	// And B gives up before A does (by the margin less the transit time,
	// since grpc-timeout is relative to the header's arrival).
	if !bDeadline.Before(aDeadline) {
		t.Errorf("B's deadline %v is not before A's %v", bDeadline, aDeadline)
	}
}

func TestThreeHopCallerHearsFromA(t *testing.T) {
	const margin = 500 * time.Millisecond
	h := newThreeHop(t, margin, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*margin)
	defer cancel()
	_, err := h.client.Plain(ctx, &pb.PingRequest{Payload: "block"})
	// Read the caller's context first: A must have answered while the
	// caller's own deadline had not fired yet.
	callerErr := ctx.Err()
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(status.Convert(err).Message(), "service A") {
		t.Fatalf("err = %v, want DEADLINE_EXCEEDED from service A", err)
	}
	if callerErr != nil {
		t.Errorf("the caller's own deadline fired (%v) before A's answer arrived", callerErr)
	}
	if h.b.calls.Load() != 1 {
		t.Errorf("B got %d calls, want 1", h.b.calls.Load())
	}
}

func TestThreeHopFailFastNeverSends(t *testing.T) {
	const margin = 500 * time.Millisecond
	t.Run("client", func(t *testing.T) {
		h := newThreeHop(t, margin, 0, 200*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := h.client.Plain(ctx, &pb.PingRequest{})
		rej, ok := outcome.AsRejection(err)
		if !ok || rej.Code != codes.DeadlineExceeded || !strings.Contains(rej.Message, "the minimum is 200ms") {
			t.Fatalf("err = %v, want a local DEADLINE_EXCEEDED rejection", err)
		}
		if n := h.counter.begun.Load(); n != 0 {
			t.Errorf("gRPC started %d calls, want none", n)
		}
		if n := h.aCalls.Load(); n != 0 {
			t.Errorf("A got %d calls, want none", n)
		}
		if ctx.Err() != nil {
			t.Error("the caller waited for its deadline instead of failing at once")
		}
	})
	t.Run("A to B", func(t *testing.T) {
		// A gets margin+100ms, keeps 100ms for B after the margin: below
		// the 300ms A needs to call B.
		h := newThreeHop(t, margin, 300*time.Millisecond, 0)
		ctx, cancel := context.WithTimeout(context.Background(), margin+100*time.Millisecond)
		defer cancel()
		_, err := h.client.Plain(ctx, &pb.PingRequest{})
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(msg, "service A") ||
			!strings.Contains(msg, "the minimum is 300ms") || !strings.Contains(msg, "not sent") {
			t.Fatalf("err = %v, want A's fail-fast DEADLINE_EXCEEDED", err)
		}
		if h.aCalls.Load() != 1 || h.b.calls.Load() != 0 {
			t.Errorf("A got %d calls, B %d: want 1 and 0", h.aCalls.Load(), h.b.calls.Load())
		}
		ev := h.aEvents.all()
		if len(ev) != 1 || ev[0].Kind != observe.DeadlineFailFast || ev[0].Duration >= 300*time.Millisecond {
			t.Errorf("A's events = %+v, want one DeadlineFailFast with less than 300ms", ev)
		}
	})
}

// Streams. TunedService/Watch is server streaming; the client-streaming and
// bidi methods are served by a hand-written ServiceDesc with the same
// messages.

const (
	mWatch   = "/failsoft.policytest.v1.TunedService/Watch"
	mCollect = "/failsoft.deadlinetest.v1.Streams/Collect"
	mEcho    = "/failsoft.deadlinetest.v1.Streams/Echo"
)

var (
	collectDesc = &grpc.StreamDesc{StreamName: "Collect", ClientStreams: true}
	echoDesc    = &grpc.StreamDesc{StreamName: "Echo", ClientStreams: true, ServerStreams: true}
)

// streamService serves all three stream kinds. Watch sends a message each
// time the test writes to next, and ends when next is closed; it blocks on
// its context otherwise. done receives each handler's context error when
// it returns.
type streamService struct {
	pb.UnimplementedTunedServiceServer
	next chan struct{}
	done chan error
}

func (s *streamService) Watch(_ *pb.PingRequest, ss grpc.ServerStreamingServer[pb.PingResponse]) error {
	defer func() { s.done <- ss.Context().Err() }()
	for i := 0; ; i++ {
		select {
		case _, ok := <-s.next:
			if !ok {
				return nil
			}
			if err := ss.Send(&pb.PingResponse{Payload: fmt.Sprint(i)}); err != nil {
				return err
			}
		case <-ss.Context().Done():
			return status.FromContextError(ss.Context().Err()).Err()
		}
	}
}

// collect counts the requests until the client closes its side.
func (s *streamService) collect(ss grpc.ServerStream) error {
	defer func() { s.done <- ss.Context().Err() }()
	n := 0
	for {
		if err := ss.RecvMsg(new(pb.PingRequest)); err == io.EOF {
			return ss.SendMsg(&pb.PingResponse{Payload: fmt.Sprint(n)})
		} else if err != nil {
			return err
		}
		n++
	}
}

// echo sends back each request until the client closes its side.
func (s *streamService) echo(ss grpc.ServerStream) error {
	defer func() { s.done <- ss.Context().Err() }()
	for {
		req := new(pb.PingRequest)
		if err := ss.RecvMsg(req); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := ss.SendMsg(&pb.PingResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

var streamsServiceDesc = grpc.ServiceDesc{
	ServiceName: "failsoft.deadlinetest.v1.Streams",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Collect", ClientStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(*streamService).collect(ss)
		}},
		{StreamName: "Echo", ClientStreams: true, ServerStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(*streamService).echo(ss)
		}},
	},
}

// streamRig serves streamService and dials it through the deadline
// interceptor, followed by one that records the context each stream was
// opened with.
type streamRig struct {
	svc    *streamService
	cc     *grpc.ClientConn
	opened chan context.Context
}

func newStreamRig(t *testing.T, opts ...deadline.Option) *streamRig {
	r := &streamRig{
		svc:    &streamService{next: make(chan struct{}), done: make(chan error, 1)},
		opened: make(chan context.Context, 1),
	}
	addr := serve(t, func(s *grpc.Server) {
		pb.RegisterTunedServiceServer(s, r.svc)
		s.RegisterService(&streamsServiceDesc, r.svc)
	})
	dl, err := deadline.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	capture := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		r.opened <- ctx
		return streamer(ctx, desc, cc, method, opts...)
	}
	r.cc = dial(t, addr, dl, grpc.WithChainStreamInterceptor(capture))
	return r
}

// serverEnded waits for the handler to return and gives its context error.
func (r *streamRig) serverEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.svc.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the server handler did not return")
		return nil
	}
}

func alive(t *testing.T, ctx context.Context, when string) {
	t.Helper()
	if ctx.Err() != nil {
		t.Fatalf("stream context ended %s: %v", when, ctx.Err())
	}
}

func released(t *testing.T, ctx context.Context) {
	t.Helper()
	if ctx.Err() != context.Canceled {
		t.Errorf("stream context %v after the stream ended, want released (Canceled)", ctx.Err())
	}
}

func TestServerStreamLivesUntilItEnds(t *testing.T) {
	r := newStreamRig(t)
	stream, err := pb.NewTunedServiceClient(r.cc).Watch(context.Background(), &pb.PingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := <-r.opened
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > 5*time.Second {
		t.Fatalf("stream deadline %v (%v), want TunedService's 5s policy", d, ok)
	}
	for i := 0; i < 3; i++ {
		alive(t, ctx, fmt.Sprintf("before message %d", i))
		r.svc.next <- struct{}{}
		if m, err := stream.Recv(); err != nil || m.GetPayload() != fmt.Sprint(i) {
			t.Fatalf("message %d: %v, %v", i, m, err)
		}
	}
	alive(t, ctx, "before the server ended it")
	close(r.svc.next)
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Recv = %v, want io.EOF", err)
	}
	released(t, ctx)
	if err := r.serverEnded(t); err != nil {
		t.Errorf("server saw its context end with %v before returning", err)
	}
}

func TestClientStreamLivesUntilItEnds(t *testing.T) {
	r := newStreamRig(t)
	cs, err := r.cc.NewStream(context.Background(), collectDesc, mCollect)
	if err != nil {
		t.Fatal(err)
	}
	ctx := <-r.opened
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > deadline.DefaultTimeout {
		t.Fatalf("stream deadline %v (%v), want the default", d, ok)
	}
	for i := 0; i < 3; i++ {
		alive(t, ctx, fmt.Sprintf("before request %d", i))
		if err := cs.SendMsg(&pb.PingRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	alive(t, ctx, "after CloseSend")
	resp := new(pb.PingResponse)
	if err := cs.RecvMsg(resp); err != nil || resp.GetPayload() != "3" {
		t.Fatalf("response %v, %v; want 3", resp, err)
	}
	released(t, ctx)
	if err := r.serverEnded(t); err != nil {
		t.Errorf("server saw its context end with %v", err)
	}
}

func TestBidiStreamLivesUntilItEnds(t *testing.T) {
	r := newStreamRig(t)
	cs, err := r.cc.NewStream(context.Background(), echoDesc, mEcho)
	if err != nil {
		t.Fatal(err)
	}
	ctx := <-r.opened
	for i := 0; i < 3; i++ {
		alive(t, ctx, fmt.Sprintf("before exchange %d", i))
		if err := cs.SendMsg(&pb.PingRequest{Payload: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		resp := new(pb.PingResponse)
		if err := cs.RecvMsg(resp); err != nil || resp.GetPayload() != fmt.Sprint(i) {
			t.Fatalf("echo %d: %v, %v", i, resp, err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	alive(t, ctx, "after CloseSend")
	if err := cs.RecvMsg(new(pb.PingResponse)); err != io.EOF {
		t.Fatalf("RecvMsg = %v, want io.EOF", err)
	}
	released(t, ctx)
	if err := r.serverEnded(t); err != nil {
		t.Errorf("server saw its context end with %v", err)
	}
}

// shortTimeouts gives the stream methods a short policy timeout in code,
// as a user would for methods of services they cannot annotate.
func shortTimeouts(t *testing.T) deadline.Option {
	t.Helper()
	short := &failsoftv1.MethodPolicy{Timeout: durationpb.New(300 * time.Millisecond)}
	r, err := policy.New(policy.WithMethod(mWatch, short), policy.WithMethod(mCollect, short), policy.WithMethod(mEcho, short))
	if err != nil {
		t.Fatal(err)
	}
	return deadline.WithResolver(r)
}

func TestStreamsCancelledOnDeadline(t *testing.T) {
	tests := []struct {
		name string
		// run opens the stream, gets it going, and returns the error of the
		// RecvMsg that waits past the deadline.
		run func(t *testing.T, r *streamRig) error
	}{
		{"server streaming", func(t *testing.T, r *streamRig) error {
			stream, err := pb.NewTunedServiceClient(r.cc).Watch(context.Background(), &pb.PingRequest{})
			if err != nil {
				t.Fatal(err)
			}
			r.svc.next <- struct{}{}
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			return err
		}},
		{"client streaming", func(t *testing.T, r *streamRig) error {
			cs, err := r.cc.NewStream(context.Background(), collectDesc, mCollect)
			if err != nil {
				t.Fatal(err)
			}
			if err := cs.SendMsg(&pb.PingRequest{}); err != nil {
				t.Fatal(err)
			}
			// No CloseSend: the server keeps waiting for more.
			return cs.RecvMsg(new(pb.PingResponse))
		}},
		{"bidi", func(t *testing.T, r *streamRig) error {
			cs, err := r.cc.NewStream(context.Background(), echoDesc, mEcho)
			if err != nil {
				t.Fatal(err)
			}
			if err := cs.SendMsg(&pb.PingRequest{Payload: "x"}); err != nil {
				t.Fatal(err)
			}
			if err := cs.RecvMsg(new(pb.PingResponse)); err != nil {
				t.Fatal(err)
			}
			return cs.RecvMsg(new(pb.PingResponse))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newStreamRig(t, shortTimeouts(t))
			err := tt.run(t, r)
			ctx := <-r.opened
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("RecvMsg past the deadline = %v, want DEADLINE_EXCEEDED", err)
			}
			// Done either way: by its own timer, or released when RecvMsg
			// returned the server's DEADLINE_EXCEEDED, which can arrive
			// first when the server's timer runs before the client's.
			if ctx.Err() == nil {
				t.Error("stream context still alive after the deadline")
			}
			if err := r.serverEnded(t); err == nil {
				t.Error("the server's stream context was not cancelled")
			}
		})
	}
}
