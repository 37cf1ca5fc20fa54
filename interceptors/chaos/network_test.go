package chaos_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

const (
	keyedWrite = "/failsoft.policytest.v1.TunedService/KeyedWrite"
	watch      = "/failsoft.policytest.v1.TunedService/Watch"
)

// server counts the work it did, so that a test can tell a call that
// never ran from one whose response was lost.
type server struct {
	pb.UnimplementedPlainServiceServer
	pb.UnimplementedTunedServiceServer
	writes chan string
}

func (s *server) KeyedWrite(_ context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	s.writes <- req.Payload
	return &pb.PingResponse{Payload: req.Payload}, nil
}

func (s *server) Watch(req *pb.PingRequest, st grpc.ServerStreamingServer[pb.PingResponse]) error {
	s.writes <- req.Payload
	for i := range 3 {
		if err := st.Send(&pb.PingResponse{Payload: fmt.Sprint(i)}); err != nil {
			return err
		}
	}
	return nil
}

func TestServerOverTheWire(t *testing.T) {
	for _, tc := range []struct {
		name    string
		faults  chaos.Faults
		want    codes.Code
		work    bool   // the handler ran
		trailer string // failsoft-chaos trailer
		msgs    int    // stream messages the client received
	}{
		{"healthy", chaos.Faults{}, codes.OK, true, "", 3},
		{"error", chaos.Faults{ErrorRate: 1, ErrorCodes: []codes.Code{codes.Aborted}}, codes.Aborted, false, chaos.KindError, 0},
		{"outage", chaos.Faults{Down: true}, codes.Unavailable, false, chaos.KindOutage, 0},
		{"pushback", chaos.Faults{PushbackRate: 1, Pushback: time.Second}, codes.ResourceExhausted, false, chaos.KindPushback, 0},
		{"lost after commit", chaos.Faults{LostRate: 1}, codes.Unavailable, true, chaos.KindLost, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := mustNew(t, on(chaos.Rule{Match: "/failsoft.policytest.v1.TunedService/*", Faults: tc.faults}))
			srv := &server{writes: make(chan string, 2)}
			addr := testserver.Serve(t, testserver.Policytest(srv),
				grpc.ChainUnaryInterceptor(inj.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(inj.StreamServerInterceptor()))
			api := pb.NewTunedServiceClient(testserver.Dial(t, addr))

			var tr metadata.MD
			_, err := api.KeyedWrite(context.Background(), &pb.PingRequest{Payload: "w"}, grpc.Trailer(&tr))
			if status.Code(err) != tc.want || (err != nil) != chaos.IsInjected(err) {
				t.Fatalf("unary: %v, want %v recognisably injected", err, tc.want)
			}
			if got := first(tr.Get(chaos.Trailer)); got != tc.trailer {
				t.Errorf("unary trailer %s = %q, want %q", chaos.Trailer, got, tc.trailer)
			}
			if tc.faults.PushbackRate > 0 && first(tr.Get(chaos.PushbackTrailer)) != "1000" {
				t.Errorf("pushback trailer %v, want 1000", tr)
			}

			st, err := api.Watch(context.Background(), &pb.PingRequest{Payload: "s"})
			if err != nil {
				t.Fatal(err)
			}
			msgs := 0
			for {
				_, err = st.Recv()
				if err != nil {
					break
				}
				msgs++
			}
			if err == io.EOF {
				err = nil
			}
			if status.Code(err) != tc.want || msgs != tc.msgs || first(st.Trailer().Get(chaos.Trailer)) != tc.trailer {
				t.Errorf("stream: %v after %d messages, trailer %v; want %v after %d", err, msgs, st.Trailer(), tc.want, tc.msgs)
			}
			if got := len(srv.writes); (got == 2) != tc.work {
				t.Errorf("handlers ran %d times, want work=%v", got, tc.work)
			}
		})
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// On the client, a lost response ends a stream that the server finished
// well with UNAVAILABLE, after the server did the work.
func TestClientStreamLost(t *testing.T) {
	inj := mustNew(t, on(chaos.Rule{Match: watch, Faults: chaos.Faults{LostRate: 1}}))
	srv := &server{writes: make(chan string, 1)}
	addr := testserver.Serve(t, testserver.Policytest(srv))
	api := pb.NewTunedServiceClient(testserver.Dial(t, addr, testserver.Through(inj)...))
	st, err := api.Watch(context.Background(), &pb.PingRequest{Payload: "s"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := 0
	for {
		if _, err = st.Recv(); err != nil {
			break
		}
		msgs++
	}
	if status.Code(err) != codes.Unavailable || !chaos.IsInjected(err) || msgs != 3 || len(srv.writes) != 1 {
		t.Fatalf("%v after %d messages, %d writes; want injected UNAVAILABLE after 3 messages and the work done", err, msgs, len(srv.writes))
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Recv after the loss: %v", err)
	}
	if n := inj.Counters().Lost; n != 1 {
		t.Errorf("lost %d, want 1", n)
	}
}

// A fault is marked on the span in the call's context and counted in the
// failsoft.chaos.faults metric.
func TestSpanAndMetric(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	inj := mustNew(t, on(chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorRate: 1, ErrorCodes: []codes.Code{codes.Internal}}}), chaos.WithMeterProvider(mp))

	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	err, _ := serve(inj, ctx, method)
	span.End()
	if status.Code(err) != codes.Internal {
		t.Fatal(err)
	}
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	marked := false
	for _, a := range ended[0].Attributes() {
		marked = marked || (a.Key == chaos.SpanAttribute && a.Value.AsBool())
	}
	ev := ended[0].Events()
	if !marked || len(ev) != 1 || ev[0].Name != chaos.SpanEvent {
		t.Errorf("span attributes %v, events %v; want %s and one %s event", ended[0].Attributes(), ev, chaos.SpanAttribute, chaos.SpanEvent)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != chaos.MetricFaults {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if k, _ := dp.Attributes.Value("failsoft.chaos.kind"); k.AsString() == chaos.KindError {
					got += dp.Value
				}
			}
		}
	}
	if got != 1 {
		t.Errorf("%s{kind=error} = %d, want 1", chaos.MetricFaults, got)
	}
}
