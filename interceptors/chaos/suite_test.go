package chaos_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

type idempotent struct {
	pb.UnimplementedPlainServiceServer
	pb.UnimplementedTunedServiceServer
}

func (idempotent) Override(context.Context, *pb.PingRequest) (*pb.PingResponse, error) {
	return &pb.PingResponse{}, nil
}

// Inside failsoft's suite, the client interceptor meets each attempt:
// injected pushback reaches the retry layer through the caller's trailer,
// and an injected failure is retried like a real one.
func TestClientInsideTheSuite(t *testing.T) {
	// Override is idempotent, has two attempts and retries
	// RESOURCE_EXHAUSTED.
	const m = "/failsoft.policytest.v1.TunedService/Override"
	inj := mustNew(t, on(chaos.Rule{Match: m, Faults: chaos.Faults{PushbackRate: 1, Pushback: 7 * time.Millisecond}}))
	var mu sync.Mutex
	var backoffs []observe.Event
	obs := observe.Func(func(_ context.Context, e observe.Event) {
		if e.Kind == observe.Backoff {
			mu.Lock()
			backoffs = append(backoffs, e)
			mu.Unlock()
		}
	})
	suite, err := failsoft.DialOptions(failsoft.WithObserver(obs), failsoft.WithRetry(retry.WithoutBudget()),
		failsoft.WithoutBreaker(), failsoft.WithoutThrottle())
	if err != nil {
		t.Fatal(err)
	}
	addr := testserver.Serve(t, testserver.Policytest(idempotent{}))
	api := pb.NewTunedServiceClient(testserver.Dial(t, addr, append(suite,
		grpc.WithChainUnaryInterceptor(inj.UnaryClientInterceptor()))...))

	_, err = api.Override(context.Background(), &pb.PingRequest{})
	if status.Code(err) != codes.ResourceExhausted || !chaos.IsInjected(err) {
		t.Fatalf("every attempt pushed back: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(backoffs) != 1 {
		t.Fatalf("%d backoffs, want 1: the retry layer should retry the injected pushback once", len(backoffs))
	}
	for _, b := range backoffs {
		if b.Reason != "pushback" || b.Duration != 7*time.Millisecond {
			t.Errorf("backoff %+v, want the injected 7ms pushback", b)
		}
	}
	if n := inj.Counters().Pushback; n != uint64(len(backoffs)+1) {
		t.Errorf("%d pushbacks injected for %d attempts", n, len(backoffs)+1)
	}
}
