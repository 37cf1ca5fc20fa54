package failsoft_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/retry"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// slowFirst answers TunedService/Override: its first call waits until its
// context ends, later calls answer at once.
type slowFirst struct {
	policytestv1.UnimplementedTunedServiceServer
	calls atomic.Int32
}

func (s *slowFirst) Override(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	if s.calls.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
}

// TestAttemptTimeoutAgainstFailsoftServer: failsoft's server keeps a safety
// margin under the deadline it gets, so it answers DEADLINE_EXCEEDED a
// moment before the client's per-attempt timeout runs out. That attempt
// still ended because of its own timeout, and is retried while the call's
// deadline allows.
func TestAttemptTimeoutAgainstFailsoftServer(t *testing.T) {
	sopts, err := failsoft.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(sopts...)
	backend := &slowFirst{}
	policytestv1.RegisterTunedServiceServer(srv, backend)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	dopts, err := failsoft.DialOptions(failsoft.WithoutTelemetry(), failsoft.WithoutBreaker())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := policytestv1.NewTunedServiceClient(conn)
	out, err := client.Override(ctx, &policytestv1.PingRequest{Payload: "x"}, retry.WithAttemptTimeout(200*time.Millisecond))
	if err != nil || out.GetPayload() != "x" {
		t.Fatalf("got %v, %v; want the second attempt's answer", out, err)
	}
	if n := backend.calls.Load(); n != 2 {
		t.Errorf("%d attempts reached the server, want 2", n)
	}
}
