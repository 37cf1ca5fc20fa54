package retry_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// TestBudgetExhaustionAndRecovery follows one target's budget: the floor
// gives MinPerSecond*TTL tokens, each call adds Ratio, each failed retry
// takes one, a retry that succeeds gives its token back, and all of it
// expires after TTL.
func TestBudgetExhaustionAndRecovery(t *testing.T) {
	e := newEnv(t, envOpts{retry: []retry.Option{retry.WithBudget(retry.Budget{Ratio: 0.1, MinPerSecond: 0.2, TTL: 10 * time.Second})}})
	var failFirst atomic.Bool
	var healthy atomic.Bool
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		retried := len(metadata.ValueFromIncomingContext(c.ctx, retry.AttemptMetadata)) > 0
		if healthy.Load() || (failFirst.Load() && retried) {
			return &pb.PingResponse{}, nil
		}
		return nil, fail(codes.Unavailable)
	}
	attempts := func() int {
		t.Helper()
		before := e.b.count(mIdempotent)
		_, _ = e.invoke(within(t, 10*time.Second), mIdempotent, "x")
		return e.b.count(mIdempotent) - before
	}
	if n := attempts(); n != 3 {
		t.Fatalf("call 1: %d attempts, want 3 (the floor's two tokens)", n)
	}
	before := e.b.count(mIdempotent)
	_, err := e.invoke(within(t, 10*time.Second), mIdempotent, "x")
	var se *retry.StopError
	if !errors.As(err, &se) || se.Reason != "budget" || status.Code(err) != codes.Unavailable || e.b.count(mIdempotent)-before != 1 {
		t.Fatalf("call 2: err = %v", err)
	}
	if info := errorInfo(err); info.GetReason() != retry.ReasonBudgetExhausted || info.GetMetadata()["target"] != "passthrough:///bufnet" {
		t.Errorf("error info = %v", info)
	}
	if ev := e.obs.of(observe.BudgetExhausted); len(ev) != 1 || ev[0].Attempt != 2 || ev[0].Target != "passthrough:///bufnet" {
		t.Errorf("budget events = %+v", ev)
	}
	// Eight more calls deposit 0.8 of a token: with the 0.2 call 2 made,
	// one retry.
	healthy.Store(true)
	for range 8 {
		attempts()
	}
	healthy.Store(false)
	failFirst.Store(true)
	// Retries that succeed give their token back: the one token pays for
	// every one of them.
	for i := range 5 {
		if n := attempts(); n != 2 {
			t.Fatalf("productive retry %d: %d attempts, want 2", i, n)
		}
	}
	failFirst.Store(false)
	if n := attempts(); n != 2 {
		t.Fatalf("a futile retry: %d attempts, want 2", n)
	}
	if n := attempts(); n != 1 {
		t.Fatalf("after the futile retry: %d attempts, want 1", n)
	}
	// Ten seconds later the spent tokens have expired with the deposits:
	// the floor is back.
	e.clock.Advance(10 * time.Second)
	if n := attempts(); n != 3 {
		t.Fatalf("after the window: %d attempts, want 3", n)
	}
}

// TestBudgetFailureModes runs the default budget against seeded faults:
// it must not refuse the retries that work (random transient failures),
// and must hold a dead target to about one attempt per call.
func TestBudgetFailureModes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		failRate    float64
		calls       int
		minSuccess  float64 // of calls; 1 - failRate^3 is the most three attempts reach
		maxAttempts float64 // per call
	}{
		{"20% transient", 0.2, 2000, 1 - 0.008 - 0.005, 1.3},
		{"dead target", 1, 2000, 0, 1.15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			rng := rand.New(rand.NewPCG(1, 2))
			var mu sync.Mutex
			e.b.unary = func(*serverCall) (*pb.PingResponse, error) {
				mu.Lock()
				defer mu.Unlock()
				if rng.Float64() < tc.failRate {
					return nil, fail(codes.Unavailable)
				}
				return &pb.PingResponse{}, nil
			}
			ctx := within(t, 60*time.Second)
			ok := 0
			for range tc.calls {
				if _, err := e.invoke(ctx, mIdempotent, "x"); err == nil {
					ok++
				}
				// About 100 calls a second, on the fake clock.
				e.clock.Advance(10 * time.Millisecond)
			}
			success := float64(ok) / float64(tc.calls)
			perCall := float64(e.b.count(mIdempotent)) / float64(tc.calls)
			t.Logf("success %.4f, %.3f attempts per call", success, perCall)
			if success < tc.minSuccess || perCall > tc.maxAttempts {
				t.Errorf("success %.4f (want >= %.4f), %.3f attempts per call (want <= %.2f)", success, tc.minSuccess, perCall, tc.maxAttempts)
			}
		})
	}
}

// TestSustainedOutage: against a server that always answers UNAVAILABLE,
// the budget keeps the attempts per logical call at or under 1.15, where
// retries without a budget send 3.
func TestSustainedOutage(t *testing.T) {
	run := func(t *testing.T, calls int, opts ...retry.Option) float64 {
		e := newEnv(t, envOpts{retry: opts})
		e.b.unary = func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) }
		ctx := within(t, 30*time.Second)
		for range calls {
			if _, err := e.invoke(ctx, mIdempotent, "x"); status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v", err)
			}
		}
		return float64(e.b.count(mIdempotent)) / float64(calls)
	}
	with := run(t, 2000)
	t.Logf("attempts per call with the default budget: %.3f", with)
	if with > 1.15 {
		t.Errorf("attempts per call = %.3f, want <= 1.15", with)
	}
	without := run(t, 200, retry.WithoutBudget())
	t.Logf("attempts per call without a budget: %.3f", without)
	if without != 3 {
		t.Errorf("without a budget: %.3f attempts per call, want 3", without)
	}
}

// TestBudgetRefundsStreams: a stream retry that gets a response through
// gives its token back, as a unary retry that succeeds does: one token pays
// for any number of them.
func TestBudgetRefundsStreams(t *testing.T) {
	e := newEnv(t, envOpts{retry: []retry.Option{retry.WithBudget(retry.Budget{Ratio: 0.01, MinPerSecond: 0.1, TTL: 10 * time.Second})}})
	e.b.stream = func(c *serverCall) error {
		if len(metadata.ValueFromIncomingContext(c.ctx, retry.AttemptMetadata)) == 0 {
			return fail(codes.Unavailable)
		}
		return c.stream.SendMsg(&pb.PingResponse{Payload: "ok"})
	}
	for i := range 5 {
		s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{Payload: "w"})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := s.Recv(); err != nil || out.GetPayload() != "ok" {
			t.Fatalf("stream %d: %v, %v", i, out, err)
		}
	}
	if n := e.b.count(mWatch); n != 10 {
		t.Errorf("%d attempts for 5 streams, want 10 (every stream retried once)", n)
	}
}

// TestCutAttemptsAreRetried: two calls start while the budget holds one
// token, so both attempts get their own timeout; both are cut, and both
// are retried, the second taking a token the first already spent. An
// attempt is cut only when a retry can follow it, and it does.
func TestCutAttemptsAreRetried(t *testing.T) {
	e := newEnv(t, envOpts{retry: []retry.Option{retry.WithBudget(retry.Budget{Ratio: 0, MinPerSecond: 0.1, TTL: 10 * time.Second})}})
	arrived := make(chan struct{}, 2)
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		if c.n <= 2 {
			arrived <- struct{}{}
			<-c.ctx.Done()
			return nil, status.Error(codes.Canceled, "gone")
		}
		return &pb.PingResponse{Payload: "retried"}, nil
	}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := e.invoke(within(t, 10*time.Second), mOverride, "x")
			errs <- err
		}()
	}
	<-arrived
	<-arrived
	e.clock.BlockUntil(2)
	e.clock.Advance(500 * time.Millisecond)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a cut attempt was not retried: %v", err)
		}
	}
	if n := e.b.count(mOverride); n != 4 {
		t.Errorf("%d attempts, want 4", n)
	}
}
