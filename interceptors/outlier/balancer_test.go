package outlier

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// fakeClockPolicy is the policy on a fake clock, registered for the tests
// under a name of its own.
const fakeClockPolicy = "failsoft_outlier_fake_clock"

var fakeClock = clock.NewFake(time.Unix(1_000_000, 0))

func init() {
	balancer.Register(builder{name: fakeClockPolicy, clock: fakeClock})
}

// failable answers PlainService/Idempotent, failing while broken.
type failable struct {
	pb.UnimplementedPlainServiceServer
	broken atomic.Bool
	calls  atomic.Int64
}

func (s *failable) Idempotent(_ context.Context, req *pb.PingRequest) (*pb.PingResponse, error) {
	s.calls.Add(1)
	if s.broken.Load() {
		return nil, status.Error(codes.Unavailable, "broken")
	}
	return &pb.PingResponse{Payload: req.GetPayload()}, nil
}

// TestBalancerOnFakeClock runs the policy in a real channel, without
// retries, on the fake clock: ejection after five failures, nothing while
// ejected, readmission when the fake time says so, and endpoints that
// follow the resolver.
func TestBalancerOnFakeClock(t *testing.T) {
	var servers [3]*failable
	var addrs []resolver.Address
	for i := range servers {
		s := &failable{}
		servers[i] = s
		addrs = append(addrs, resolver.Address{Addr: testserver.Serve(t, func(g *grpc.Server) { pb.RegisterPlainServiceServer(g, s) })})
	}
	r := manual.NewBuilderWithScheme("outlier-fake")
	r.InitialState(resolver.State{Addresses: addrs})
	cc := testserver.Dial(t, "outlier-fake:///x", grpc.WithResolvers(r), grpc.WithDisableRetry(),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+fakeClockPolicy+`":{"childPolicy":[{"round_robin":{}}]}}]}`))
	client := pb.NewPlainServiceClient(cc)
	call := func(n int) (failed int) {
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := client.Idempotent(ctx, &pb.PingRequest{}, grpc.WaitForReady(true)); err != nil {
				failed++
			}
			cancel()
		}
		return failed
	}
	served := func() (got [3]int64) {
		for i, s := range servers {
			got[i] = s.calls.Swap(0)
		}
		return got
	}
	// Until every backend is connected and in rotation.
	deadline := time.Now().Add(10 * time.Second)
	for seen := [3]bool{}; !seen[0] || !seen[1] || !seen[2]; {
		if time.Now().After(deadline) {
			t.Fatal("the backends did not all serve within 10 s")
		}
		call(1)
		for i, n := range served() {
			seen[i] = seen[i] || n > 0
		}
	}
	// A run of calls sees every backend in turn.
	call(3)
	served()

	servers[0].broken.Store(true)
	steps := []struct {
		name    string
		do      func()
		calls   int
		failed  int
		served0 int64 // calls at the broken (then healed) backend
	}{
		{"five failures eject", nil, 30, 5, 5},
		{"ejected: no call", nil, 30, 0, 0},
		{"still ejected after 9.9 s", func() { fakeClock.Advance(9900 * time.Millisecond) }, 30, 0, 0},
		{"readmitted at 10 s, a failure ejects it again", func() { fakeClock.Advance(100 * time.Millisecond) }, 30, 1, 1},
		{"healed but ejected for 20 s", func() { servers[0].broken.Store(false); fakeClock.Advance(19 * time.Second) }, 30, 0, 0},
		{"readmitted, a third of the calls", func() { fakeClock.Advance(time.Second) }, 30, 0, 10},
		{"removed by the resolver", func() { r.UpdateState(resolver.State{Addresses: addrs[1:]}) }, 30, 0, 0},
		{"back with a fresh record", func() { r.UpdateState(resolver.State{Addresses: addrs}) }, 60, 0, 20},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		if s.name == "back with a fresh record" || s.name == "removed by the resolver" {
			// Until the new picker is in use: the resolver's update is
			// applied in the background.
			waitFor(t, func() bool {
				call(3)
				got := served()
				return (got[0] > 0) == (s.served0 > 0)
			})
		}
		failed := call(s.calls)
		got := served()
		if failed != s.failed || got[0] != s.served0 {
			t.Fatalf("%s: %d of %d calls failed (want %d), calls per backend %v (want %d at the first)",
				s.name, failed, s.calls, s.failed, got, s.served0)
		}
	}
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}
