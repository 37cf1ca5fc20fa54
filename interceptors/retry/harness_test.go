package retry_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Method names used by the tests.
const (
	mPlain      = "/failsoft.policytest.v1.PlainService/Plain"
	mIdempotent = "/failsoft.policytest.v1.PlainService/Idempotent"
	mNoSide     = "/failsoft.policytest.v1.PlainService/NoSideEffects"
	mOverride   = "/failsoft.policytest.v1.TunedService/Override"
	mInherit    = "/failsoft.policytest.v1.TunedService/Inherit"
	mHedged     = "/failsoft.policytest.v1.TunedService/Hedged"
	mQuantile   = "/failsoft.policytest.v1.TunedService/HedgedQuantile"
	mKeyed      = "/failsoft.policytest.v1.TunedService/KeyedWrite"
	mVetoed     = "/failsoft.policytest.v1.TunedService/Vetoed"
	mWatch      = "/failsoft.policytest.v1.TunedService/Watch"
	mUpload     = "/failsoft.retrytest.v1.Streams/Upload"
	mChat       = "/failsoft.retrytest.v1.Streams/Chat"
)

// serverCall is one attempt as the test server sees it.
type serverCall struct {
	ctx    context.Context
	method string
	n      int // 1 for the first attempt of this method the server saw
	req    *pb.PingRequest
	stream grpc.ServerStream // nil for unary
}

// backend is the test server: every method counts its attempts, records
// the attempt metadata and runs the test's script.
type backend struct {
	mu       sync.Mutex
	attempts map[string]int
	md       []string // AttemptMetadata of each attempt, "" when absent
	unary    func(c *serverCall) (*pb.PingResponse, error)
	stream   func(c *serverCall) error
}

func (b *backend) begin(ctx context.Context, method string) *serverCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts[method]++
	v := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(retry.AttemptMetadata)) > 0 {
		v = md.Get(retry.AttemptMetadata)[0]
	}
	b.md = append(b.md, v)
	return &serverCall{ctx: ctx, method: method, n: b.attempts[method]}
}

func (b *backend) count(method string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts[method]
}

func (b *backend) attemptMD() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.md...)
}

func (b *backend) handleUnary(ctx context.Context, method string, req *pb.PingRequest) (*pb.PingResponse, error) {
	c := b.begin(ctx, method)
	c.req = req
	if b.unary == nil {
		return &pb.PingResponse{Payload: req.GetPayload()}, nil
	}
	return b.unary(c)
}

func (b *backend) handleStream(method string, ss grpc.ServerStream, req *pb.PingRequest) error {
	c := b.begin(ss.Context(), method)
	c.ctx, c.stream, c.req = ss.Context(), ss, req
	return b.stream(c)
}

type plainServer struct {
	pb.UnimplementedPlainServiceServer
	b *backend
}

func (s plainServer) Plain(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mPlain, r)
}
func (s plainServer) Idempotent(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mIdempotent, r)
}
func (s plainServer) NoSideEffects(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mNoSide, r)
}

type tunedServer struct {
	pb.UnimplementedTunedServiceServer
	b *backend
}

func (s tunedServer) Inherit(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mInherit, r)
}
func (s tunedServer) Override(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mOverride, r)
}
func (s tunedServer) Hedged(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mHedged, r)
}
func (s tunedServer) HedgedQuantile(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mQuantile, r)
}
func (s tunedServer) KeyedWrite(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mKeyed, r)
}
func (s tunedServer) Vetoed(ctx context.Context, r *pb.PingRequest) (*pb.PingResponse, error) {
	return s.b.handleUnary(ctx, mVetoed, r)
}
func (s tunedServer) Watch(r *pb.PingRequest, ss grpc.ServerStreamingServer[pb.PingResponse]) error {
	return s.b.handleStream(mWatch, ss, r)
}

// streamsDesc is a hand-written service with the two stream kinds the
// generated test service lacks.
var streamsDesc = grpc.ServiceDesc{
	ServiceName: "failsoft.retrytest.v1.Streams",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Upload", ClientStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(*backend).handleStream(mUpload, ss, nil)
		}},
		{StreamName: "Chat", ClientStreams: true, ServerStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(*backend).handleStream(mChat, ss, nil)
		}},
	},
}

var (
	uploadDesc = &streamsDesc.Streams[0]
	chatDesc   = &streamsDesc.Streams[1]
	watchDesc  = &pb.TunedService_ServiceDesc.Streams[0]
)

// env is a test server and a client with the retry interceptor.
type env struct {
	t     *testing.T
	b     *backend
	cc    *grpc.ClientConn
	clock *clock.Fake
	rand  *fixedRand
	obs   *recorder
	ic    *retry.Interceptor
}

type fixedRand struct{ v atomic.Uint64 } // float64 bits

func (r *fixedRand) set(f float64) { r.v.Store(uint64(f * 1e9)) }
func (r *fixedRand) get() float64  { return float64(r.v.Load()) / 1e9 }

// testResolver gives the hand-written stream methods their policies.
func testResolver(t testing.TB) *policy.Resolver {
	t.Helper()
	idem := &failsoftv1.MethodPolicy{Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT}
	r, err := policy.New(policy.WithMethod(mUpload, idem), policy.WithMethod(mChat, idem))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type envOpts struct {
	retry  []retry.Option
	unary  []grpc.UnaryClientInterceptor  // inside the retry interceptor
	stream []grpc.StreamClientInterceptor // inside the retry interceptor
	system bool                           // system clock instead of the fake
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{
		t:     t,
		b:     &backend{attempts: map[string]int{}},
		clock: clock.NewFake(time.Now()),
		rand:  &fixedRand{},
		obs:   &recorder{},
	}
	opts := []retry.Option{
		retry.WithResolver(testResolver(t)),
		retry.WithRand(e.rand.get),
		retry.WithObserver(e.obs),
	}
	if !o.system {
		opts = append(opts, retry.WithClock(e.clock))
	}
	opts = append(opts, o.retry...)
	ic, err := retry.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.ic = ic
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterPlainServiceServer(srv, plainServer{b: e.b})
	pb.RegisterTunedServiceServer(srv, tunedServer{b: e.b})
	srv.RegisterService(&streamsDesc, e.b)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(append([]grpc.UnaryClientInterceptor{ic.UnaryClientInterceptor()}, o.unary...)...),
		grpc.WithChainStreamInterceptor(append([]grpc.StreamClientInterceptor{ic.StreamClientInterceptor()}, o.stream...)...),
	)
	if err != nil {
		t.Fatal(err)
	}
	e.cc = cc
	t.Cleanup(func() {
		_ = cc.Close()
		srv.Stop()
	})
	// Connect first, so that tests with short deadlines measure calls,
	// not the connection.
	cc.Connect()
	ctx := within(t, 10*time.Second)
	for st := cc.GetState(); st != connectivity.Ready; st = cc.GetState() {
		if !cc.WaitForStateChange(ctx, st) {
			t.Fatalf("connection not ready: %v", st)
		}
	}
	return e
}

func (e *env) invoke(ctx context.Context, method, payload string, opts ...grpc.CallOption) (*pb.PingResponse, error) {
	out := new(pb.PingResponse)
	err := e.cc.Invoke(ctx, method, &pb.PingRequest{Payload: payload}, out, opts...)
	return out, err
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	cond   *sync.Cond
	events []observe.Event
	// skipAttempts makes the recorder say it has no use for attempt
	// events (observe.Selector), as telemetry with nothing recording does:
	// the interceptor then takes its path for unobserved calls.
	skipAttempts atomic.Bool
}

func (r *recorder) Wants(_ context.Context, k observe.Kind) bool {
	return !(r.skipAttempts.Load() && (k == observe.AttemptStart || k == observe.AttemptEnd))
}

func (r *recorder) Observe(_ context.Context, ev observe.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	if r.cond != nil {
		r.cond.Broadcast()
	}
}

// waitFor blocks until n events of kind k were observed.
func (r *recorder) waitFor(k observe.Kind, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cond == nil {
		r.cond = sync.NewCond(&r.mu)
	}
	for {
		c := 0
		for _, ev := range r.events {
			if ev.Kind == k {
				c++
			}
		}
		if c >= n {
			return
		}
		r.cond.Wait()
	}
}

func (r *recorder) of(k observe.Kind) []observe.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []observe.Event
	for _, ev := range r.events {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

// stopReasons lists the Reason of every RetryStopped event.
func (r *recorder) stopReasons() []string {
	var out []string
	for _, ev := range r.of(observe.RetryStopped) {
		out = append(out, ev.Reason)
	}
	return out
}

func fail(c codes.Code) error { return status.Error(c, "injected "+c.String()) }

// recvAll receives until the stream ends.
func recvAll(s grpc.ClientStream) ([]string, error) {
	var got []string
	for {
		m := new(pb.PingResponse)
		if err := s.RecvMsg(m); err != nil {
			if err == io.EOF {
				return got, nil
			}
			return got, err
		}
		got = append(got, m.GetPayload())
	}
}

// within bounds a test's waits.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
