package retry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// hedgeServer answers attempt n after block(n) returns, with its error or
// payload "attempt n". Each attempt reports its arrival and, if it was
// cancelled, its cancellation.
type hedgeServer struct {
	arrived   chan int
	cancelled chan int
}

func newHedgeServer(e *env, answer func(c *serverCall) (*pb.PingResponse, error)) *hedgeServer {
	h := &hedgeServer{arrived: make(chan int, 10), cancelled: make(chan int, 10)}
	e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
		_ = grpc.SetHeader(c.ctx, metadata.Pairs("attempt", fmt.Sprint(c.n)))
		h.arrived <- c.n
		out, err := answer(c)
		if c.ctx.Err() != nil {
			h.cancelled <- c.n
		}
		return out, err
	}
	return h
}

func hang(c *serverCall) (*pb.PingResponse, error) {
	<-c.ctx.Done()
	return nil, status.Error(codes.Canceled, "gone")
}

func reply(c *serverCall) (*pb.PingResponse, error) {
	return &pb.PingResponse{Payload: fmt.Sprintf("attempt %d", c.n)}, nil
}

// TestHedgeWinnerAndLosers: Hedged sends a second attempt after 100 ms;
// the second answers, wins, and the first is cancelled. Only the winner's
// reply and header reach the caller.
func TestHedgeWinnerAndLosers(t *testing.T) {
	e := newEnv(t, envOpts{})
	h := newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		if c.n == 1 {
			return hang(c)
		}
		return reply(c)
	})
	type result struct {
		out    *pb.PingResponse
		header metadata.MD
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var hdr metadata.MD
		out, err := e.invoke(within(t, 10*time.Second), mHedged, "x", grpc.Header(&hdr))
		done <- result{out, hdr, err}
	}()
	if n := <-h.arrived; n != 1 {
		t.Fatalf("first arrival %d", n)
	}
	e.clock.BlockUntil(1)
	e.clock.Advance(100 * time.Millisecond)
	r := <-done
	if r.err != nil || r.out.GetPayload() != "attempt 2" || !slices.Equal(r.header.Get("attempt"), []string{"2"}) {
		t.Fatalf("got %v, header %v, %v", r.out, r.header, r.err)
	}
	if n := <-h.cancelled; n != 1 {
		t.Errorf("cancelled attempt %d, want 1", n)
	}
	hedges := e.obs.of(observe.Hedge)
	if len(hedges) != 1 || hedges[0].Attempt != 2 || hedges[0].Duration != 100*time.Millisecond {
		t.Errorf("hedge events = %+v", hedges)
	}
	if got := e.b.attemptMD(); !slices.Equal(got, []string{"", "2"}) {
		t.Errorf("attempt metadata = %q", got)
	}
	if e.clock.Timers() != 0 {
		t.Errorf("%d timers left", e.clock.Timers())
	}
}

func TestHedgeFirstWins(t *testing.T) {
	e := newEnv(t, envOpts{})
	newHedgeServer(e, reply)
	out, err := e.invoke(within(t, 10*time.Second), mHedged, "x")
	if err != nil || out.GetPayload() != "attempt 1" {
		t.Fatalf("got %v, %v", out, err)
	}
	if len(e.obs.of(observe.Hedge)) != 0 || e.b.count(mHedged) != 1 || e.clock.Timers() != 0 {
		t.Errorf("hedges %d, attempts %d, timers %d", len(e.obs.of(observe.Hedge)), e.b.count(mHedged), e.clock.Timers())
	}
}

// TestHedgeRetryableFailure: a hedged call whose attempts fail fast is
// retried per its retry policy; hedges and retries share one limit, the
// larger of the two policies' max_attempts; when all fail, the last error
// is returned.
func TestHedgeRetryableFailure(t *testing.T) {
	e := newEnv(t, envOpts{})
	newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		if c.n < 3 {
			return nil, fail(codes.Unavailable)
		}
		return reply(c)
	})
	out, err := e.invoke(within(t, 10*time.Second), mHedged, "x")
	if err != nil || out.GetPayload() != "attempt 3" {
		t.Fatalf("got %v, %v", out, err)
	}

	e = newEnv(t, envOpts{})
	newHedgeServer(e, func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) })
	p, err := testResolver(t).Resolve(mHedged)
	if err != nil {
		t.Fatal(err)
	}
	limit := max(p.Retry.MaxAttempts, p.Hedge.MaxAttempts)
	if limit <= p.Hedge.MaxAttempts {
		t.Fatalf("the test needs a retry policy that allows more attempts than hedging: %d, %d", p.Retry.MaxAttempts, p.Hedge.MaxAttempts)
	}
	if _, err := e.invoke(within(t, 10*time.Second), mHedged, "x"); status.Code(err) != codes.Unavailable || e.b.count(mHedged) != limit {
		t.Fatalf("err %v after %d attempts, want %d", err, e.b.count(mHedged), limit)
	}
	if got := e.obs.stopReasons(); !slices.Equal(got, []string{"attempts"}) {
		t.Errorf("stop reasons = %q", got)
	}
	// WithMax caps the hedges of one call.
	e = newEnv(t, envOpts{})
	newHedgeServer(e, func(*serverCall) (*pb.PingResponse, error) { return nil, fail(codes.Unavailable) })
	if _, err := e.invoke(within(t, 10*time.Second), mHedged, "x", retry.WithMax(2)); status.Code(err) != codes.Unavailable || e.b.count(mHedged) != 2 {
		t.Fatalf("err %v after %d attempts", err, e.b.count(mHedged))
	}
}

// TestHedgeFatalFailure: a non-retryable status ends the call at once and
// cancels the attempts in flight.
func TestHedgeFatalFailure(t *testing.T) {
	e := newEnv(t, envOpts{})
	h := newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		if c.n == 1 {
			return hang(c)
		}
		return nil, fail(codes.InvalidArgument)
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(within(t, 10*time.Second), mHedged, "x")
		done <- err
	}()
	<-h.arrived
	e.clock.BlockUntil(1)
	e.clock.Advance(100 * time.Millisecond)
	if err := <-done; status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v", err)
	}
	if n := <-h.cancelled; n != 1 {
		t.Errorf("cancelled %d", n)
	}
}

func TestHedgePushback(t *testing.T) {
	e := newEnv(t, envOpts{})
	newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		_ = grpc.SetTrailer(c.ctx, metadata.Pairs(retry.PushbackMetadata, "-1"))
		return nil, fail(codes.Unavailable)
	})
	if _, err := e.invoke(within(t, 10*time.Second), mHedged, "x"); status.Code(err) != codes.Unavailable || e.b.count(mHedged) != 1 {
		t.Fatalf("err %v after %d attempts", err, e.b.count(mHedged))
	}
	if got := e.obs.stopReasons(); !slices.Equal(got, []string{"pushback"}) {
		t.Errorf("stop reasons = %q", got)
	}

	// A valid pushback delays the retry by exactly that.
	e = newEnv(t, envOpts{})
	newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		if c.n == 1 {
			_ = grpc.SetTrailer(c.ctx, metadata.Pairs(retry.PushbackMetadata, "300"))
			return nil, fail(codes.Unavailable)
		}
		return reply(c)
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(within(t, 10*time.Second), mHedged, "x")
		done <- err
	}()
	e.obs.waitFor(observe.Backoff, 1) // reported once the pushback's timer is set
	e.clock.Advance(300 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if bs := e.obs.of(observe.Backoff); len(bs) != 1 || bs[0].Duration != 300*time.Millisecond || bs[0].Reason != "pushback" {
		t.Errorf("backoffs = %+v", bs)
	}
	if hs := e.obs.of(observe.Hedge); len(hs) != 0 || e.b.count(mHedged) != 2 {
		t.Errorf("hedges = %+v after %d attempts, want a retry alone", hs, e.b.count(mHedged))
	}
}

// TestHedgeSpendsBudget: each hedge takes a token; a refused hedge is
// reported, and a call whose attempts then fail says the budget stopped it.
func TestHedgeSpendsBudget(t *testing.T) {
	e := newEnv(t, envOpts{retry: []retry.Option{retry.WithBudget(retry.Budget{Ratio: 0.01, MinPerSecond: 0.1, TTL: 10 * time.Second})}})
	release := make(chan struct{})
	h := newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		<-release
		return nil, fail(codes.Unavailable)
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(within(t, 10*time.Second), mHedged, "x")
		done <- err
	}()
	<-h.arrived
	e.clock.BlockUntil(1)
	e.clock.Advance(100 * time.Millisecond) // hedge 2 takes the only token
	<-h.arrived
	e.clock.BlockUntil(1)
	e.clock.Advance(100 * time.Millisecond) // hedge 3 is refused
	e.obs.waitFor(observe.BudgetExhausted, 1)
	close(release)
	err := <-done
	var se *retry.StopError
	if !errors.As(err, &se) || se.Reason != "budget" || status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v", err)
	}
	if info := errorInfo(err); info.GetReason() != retry.ReasonBudgetExhausted {
		t.Errorf("error info = %v", info)
	}
	if ev := e.obs.of(observe.BudgetExhausted); len(ev) != 1 || !ev[0].Hedge || ev[0].Attempt != 3 {
		t.Errorf("budget events = %+v", ev)
	}
	if e.b.count(mHedged) != 2 {
		t.Errorf("attempts = %d", e.b.count(mHedged))
	}
}

// TestHedgeQuantileDelay: HedgedQuantile hedges at the 95th percentile of
// its recent latencies once it has enough of them; before, at its fixed
// 200 ms.
func TestHedgeQuantileDelay(t *testing.T) {
	e := newEnv(t, envOpts{})
	var slow atomic.Bool
	h := newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		if slow.Load() && c.n == 33 {
			return hang(c)
		}
		return reply(c)
	})
	// 32 calls answered at once (on the fake clock: 0 s) fill the window.
	for range 32 {
		if _, err := e.invoke(within(t, 10*time.Second), mQuantile, "x"); err != nil {
			t.Fatal(err)
		}
		<-h.arrived
	}
	slow.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(within(t, 10*time.Second), mQuantile, "x")
		done <- err
	}()
	<-h.arrived
	e.clock.BlockUntil(1)
	e.clock.Advance(time.Nanosecond) // the quantile, floored at 1 ns
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if hs := e.obs.of(observe.Hedge); len(hs) != 1 || hs[0].Duration != time.Nanosecond {
		t.Errorf("hedges = %+v", hs)
	}
}

// TestHedgeAttemptsOnContext: the first attempt of a hedged call carries no
// backoff (it waited for nothing); a hedge carries its delay and "hedge".
func TestHedgeAttemptsOnContext(t *testing.T) {
	var mu sync.Mutex
	var seen []observe.Attempt
	record := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		seen = append(seen, observe.AttemptFrom(ctx))
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	e := newEnv(t, envOpts{unary: []grpc.UnaryClientInterceptor{record}})
	h := newHedgeServer(e, func(c *serverCall) (*pb.PingResponse, error) {
		if c.n == 1 {
			return hang(c)
		}
		return reply(c)
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.invoke(within(t, 10*time.Second), mHedged, "x")
		done <- err
	}()
	<-h.arrived
	e.clock.BlockUntil(1)
	e.clock.Advance(100 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []observe.Attempt{{N: 1}, {N: 2, Hedge: true, Backoff: 100 * time.Millisecond, BackoffReason: "hedge"}}
	if !slices.Equal(seen, want) {
		t.Errorf("attempts on the context = %+v, want %+v", seen, want)
	}
}
