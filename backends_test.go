package failsoft_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// backendServer answers PlainService/Idempotent, or fails every call when
// broken.
type backendServer struct {
	policytestv1.UnimplementedPlainServiceServer
	broken bool
	calls  *atomic.Int64 // attempts that reached any backend
}

func (s *backendServer) Idempotent(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	s.calls.Add(1)
	if s.broken {
		return nil, status.Error(codes.Unavailable, "this backend is broken")
	}
	return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
}

// TestOneBadBackendOfThree: behind one target, three loopback backends, the
// first of which fails every call. With DialOptions' defaults, calls spread
// over the backends and a failed attempt is retried on another one: every
// call succeeds, at about 1.33 attempts per call. With grpc-go's default
// balancing (pick_first) every attempt goes to the broken one.
func TestOneBadBackendOfThree(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        []failsoft.Option
		minSuccess  float64
		maxAttempts float64
	}{
		{"defaults", nil, 0.99, 1.55},
		{"pick_first", []failsoft.Option{failsoft.WithLoadBalancing("")}, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			var addrs []resolver.Address
			for i := range 3 {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				policytestv1.RegisterPlainServiceServer(srv, &backendServer{broken: i == 0, calls: &calls})
				go srv.Serve(lis)
				t.Cleanup(srv.Stop)
				addrs = append(addrs, resolver.Address{Addr: lis.Addr().String()})
			}
			r := manual.NewBuilderWithScheme("backends")
			r.InitialState(resolver.State{Addresses: addrs})
			dopts, err := failsoft.DialOptions(append([]failsoft.Option{failsoft.WithoutTelemetry()}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient("backends:///three", append(dopts,
				grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := policytestv1.NewPlainServiceClient(conn)
			const n = 300
			ok := 0
			for range n {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := client.Idempotent(ctx, &policytestv1.PingRequest{Payload: "x"}); err == nil {
					ok++
				}
				cancel()
			}
			success, perCall := float64(ok)/n, float64(calls.Load())/n
			t.Logf("success %.3f at %.2f attempts per call", success, perCall)
			if success < tc.minSuccess || perCall > tc.maxAttempts {
				t.Errorf("success %.3f (want >= %.2f) at %.2f attempts per call (want <= %.2f)", success, tc.minSuccess, perCall, tc.maxAttempts)
			}
		})
	}
}
