package failsoft_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// ledgerServer implements TunedService/KeyedWrite, a write that is not
// idempotent: each execution books one entry for the payload.
type ledgerServer struct {
	policytestv1.UnimplementedTunedServiceServer
	mu      sync.Mutex
	entries map[string]int
}

func (s *ledgerServer) KeyedWrite(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[req.GetPayload()]++
	return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
}

// lossy loses the response of a committed call with the given probability:
// the caller sees UNAVAILABLE although the write happened.
func lossy(rate float64, seed uint64) grpc.UnaryServerInterceptor {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		mu.Lock()
		lose := rng.Float64() < rate
		mu.Unlock()
		if err == nil && lose {
			return nil, status.Error(codes.Unavailable, "response lost after commit")
		}
		return resp, err
	}
}

func TestServerOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts []failsoft.ServerOption
		want string
	}{
		{"nil", []failsoft.ServerOption{nil}, "nil ServerOption"},
		{"twice", []failsoft.ServerOption{failsoft.WithServerDeadline(), failsoft.WithoutServerDeadline()}, "configured twice"},
		{"bad margin", []failsoft.ServerOption{failsoft.WithServerDeadline(deadline.WithSafetyMargin(-1))}, "server deadline layer"},
		{"nil resolver", []failsoft.ServerOption{failsoft.WithServerResolver(nil)}, "WithServerResolver"},
		{"resolver twice", []failsoft.ServerOption{failsoft.WithServerResolver(policy.Default()), failsoft.WithServerResolver(policy.Default())}, "WithServerResolver: given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := failsoft.ServerOptions(tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestExactlyOnceThroughTheSuite retries a non-idempotent write whose
// responses are often lost after commit: the client suite attaches one key
// per logical call and retries it, the server suite answers repeats from
// its store, and the ledger books each successful write exactly once.
func TestExactlyOnceThroughTheSuite(t *testing.T) {
	tests := []struct {
		name       string
		opts       []failsoft.ServerOption
		duplicates bool
	}{
		{"server deduplicates", []failsoft.ServerOption{failsoft.WithServerIdempotency(idempotency.WithIdentity(idempotency.Unauthenticated))}, false},
		// The control shows that the test sees duplicates when they happen.
		{"control: no deduplication", []failsoft.ServerOption{failsoft.WithoutServerIdempotency()}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { exactlyOnce(t, tc.opts, tc.duplicates) })
	}
}

func exactlyOnce(t *testing.T, opts []failsoft.ServerOption, wantDuplicates bool) {
	srv := &ledgerServer{entries: map[string]int{}}
	serverOpts, err := failsoft.ServerOptions(opts...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(lossy(0.3, 7))}, serverOpts...)...)
	policytestv1.RegisterTunedServiceServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)

	clientOpts, err := failsoft.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn := dialConn(t, lis.Addr().String(), clientOpts...)
	c := policytestv1.NewTunedServiceClient(conn)

	const calls = 200
	var ok, failed int
	for i := range calls {
		payload := fmt.Sprintf("charge-%03d", i)
		_, err := c.KeyedWrite(context.Background(), &policytestv1.PingRequest{Payload: payload})
		if err == nil {
			ok++
			continue
		}
		failed++
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	duplicates := 0
	for payload, n := range srv.entries {
		if n != 1 {
			duplicates++
			if !wantDuplicates {
				t.Errorf("%s booked %d times", payload, n)
			}
		}
	}
	if wantDuplicates && duplicates == 0 {
		t.Error("no duplicates without deduplication: the test cannot see them")
	}
	if ok < calls/2 {
		t.Errorf("only %d of %d writes succeeded", ok, calls)
	}
	if len(srv.entries) < ok {
		t.Errorf("%d writes succeeded but the ledger holds %d", ok, len(srv.entries))
	}
	t.Logf("%d ok, %d failed, %d booked", ok, failed, len(srv.entries))
}
