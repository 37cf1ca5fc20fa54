package e2e

import (
	"context"
	"net"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

type pingServer struct {
	pb.UnimplementedPlainServiceServer
}

func (pingServer) Plain(context.Context, *pb.PingRequest) (*pb.PingResponse, error) {
	return &pb.PingResponse{}, nil
}

// A server that already traces calls with otelgrpc's stats handler gets one
// server span per call, with failsoft's attributes on it, not two siblings.
func TestOtelgrpcServerHandlerOneServerSpan(t *testing.T) {
	for _, tc := range []struct {
		name       string
		otelgrpc   bool
		wantServer int
	}{
		{"failsoft alone", false, 1},
		{"with otelgrpc's stats handler", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			defer tp.Shutdown(context.Background()) //nolint:errcheck // in-memory recorder

			serverOpts, err := failsoft.ServerOptions(failsoft.WithServerTelemetry(telemetry.WithTracerProvider(tp)),
				failsoft.WithServerIdempotency(idempotency.WithIdentity(idempotency.Unauthenticated)))
			if err != nil {
				t.Fatal(err)
			}
			if tc.otelgrpc {
				serverOpts = append(serverOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))))
			}
			srv := grpc.NewServer(serverOpts...)
			pb.RegisterPlainServiceServer(srv, pingServer{})
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(lis) //nolint:errcheck // returns when stopped
			defer srv.Stop()

			suite, err := failsoft.DialOptions(failsoft.WithTelemetry(telemetry.WithTracerProvider(tp)))
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient(lis.Addr().String(), append(suite, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := pb.NewPlainServiceClient(conn).Plain(context.Background(), &pb.PingRequest{}); err != nil {
				t.Fatal(err)
			}
			srv.GracefulStop()

			var servers []sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanKind() == trace.SpanKindServer {
					servers = append(servers, s)
				}
			}
			if len(servers) != tc.wantServer {
				t.Fatalf("%d server spans, want %d", len(servers), tc.wantServer)
			}
			var hasOutcome bool
			for _, kv := range servers[0].Attributes() {
				if kv.Key == telemetry.Outcome {
					hasOutcome = true
				}
			}
			if !hasOutcome {
				t.Errorf("server span %q has no %s attribute: %v", servers[0].Name(), telemetry.Outcome, servers[0].Attributes())
			}
		})
	}
}
