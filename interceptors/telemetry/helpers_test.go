package telemetry

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/observe"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// flaky answers UNAVAILABLE to the first fail calls, then OK.
type flaky struct {
	pb.UnimplementedPlainServiceServer
	pb.UnimplementedTunedServiceServer
	fail  int32
	calls atomic.Int32
}

func (f *flaky) Plain(ctx context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	if f.calls.Add(1) <= f.fail {
		return nil, status.Error(codes.Unavailable, "flaky")
	}
	return &pb.PingResponse{Payload: req.GetPayload()}, nil
}

func (f *flaky) Watch(req *pb.PingRequest, ss grpc.ServerStreamingServer[pb.PingResponse]) error {
	for range 3 {
		if err := ss.Send(&pb.PingResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
	return nil
}

// env is a traced client and server over loopback TCP.
type env struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tel    *Interceptor
	srv    *flaky
	conn   *grpc.ClientConn
	plain  pb.PlainServiceClient
	tuned  pb.TunedServiceClient
}

func newEnv(t *testing.T, fail int32, clientOpts ...Option) *env {
	t.Helper()
	e := &env{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(), srv: &flaky{fail: fail}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	var err error
	e.tel, err = New(append([]Option{WithTracerProvider(tp), WithMeterProvider(mp)}, clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srvTel, err := New(append([]Option{WithTracerProvider(tp), WithMeterProvider(mp)}, clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(srvTel.UnaryServerInterceptor()),
		grpc.StreamInterceptor(srvTel.StreamServerInterceptor()))
	pb.RegisterPlainServiceServer(s, e.srv)
	pb.RegisterTunedServiceServer(s, e.srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	e.conn, err = grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(e.tel.UnaryClientInterceptor(), testRetry(e.tel, 3, 7*time.Millisecond), e.tel.UnaryAttemptInterceptor()),
		grpc.WithChainStreamInterceptor(e.tel.StreamClientInterceptor(), e.tel.StreamAttemptInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.conn.Close() })
	e.plain = pb.NewPlainServiceClient(e.conn)
	e.tuned = pb.NewTunedServiceClient(e.conn)
	return e
}

// testRetry is a minimal retry loop that sets the attempt on each attempt's
// context and reports to obs, standing in for the retry package. It does not
// wait: the backoff is reported, not slept.
func testRetry(obs observe.Observer, attempts int, backoff time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var err error
		for n := 1; n <= attempts; n++ {
			a := observe.Attempt{N: n}
			if n > 1 {
				a.Backoff, a.BackoffReason = backoff, "policy"
				obs.Observe(ctx, observe.Event{Kind: observe.Backoff, Method: method, Target: cc.Target(), Attempt: n, Duration: backoff, Reason: "policy"})
			}
			obs.Observe(ctx, observe.Event{Kind: observe.AttemptStart, Method: method, Target: cc.Target(), Attempt: n})
			err = invoker(observe.WithAttempt(ctx, a), method, req, reply, cc, opts...)
			obs.Observe(ctx, observe.Event{Kind: observe.AttemptEnd, Method: method, Target: cc.Target(), Attempt: n, Err: err, Duration: time.Millisecond})
			if status.Code(err) != codes.Unavailable {
				return err
			}
		}
		obs.Observe(ctx, observe.Event{Kind: observe.RetryStopped, Method: method, Target: cc.Target(), Reason: "attempts"})
		return err
	}
}

// metrics collects the current metric values by name.
func (e *env) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// sum returns the total of an int64 counter.
func sum(a metricdata.Aggregation) int64 {
	s, ok := a.(metricdata.Sum[int64])
	if !ok {
		return -1
	}
	var n int64
	for _, dp := range s.DataPoints {
		n += dp.Value
	}
	return n
}
