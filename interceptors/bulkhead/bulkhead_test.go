package bulkhead_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/bulkhead"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const method = "/failsoft.policytest.v1.PlainService/Plain"

// blocker is an invoker whose calls wait until released.
type blocker struct {
	started chan struct{}
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (b *blocker) invoke(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	b.started <- struct{}{}
	<-b.release
	return nil
}

func noop(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }

// fill starts n blocked calls through unary and waits until they run.
func fill(t *testing.T, unary grpc.UnaryClientInterceptor, cc *grpc.ClientConn, b *blocker, n int) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := unary(context.Background(), method, nil, nil, cc, b.invoke); err != nil {
				t.Errorf("blocked call: %v", err)
			}
		}()
	}
	for range n {
		<-b.started
	}
	return &wg
}

func TestRejectsWhenFull(t *testing.T) {
	var events []observe.Event
	var mu sync.Mutex
	ic, err := bulkhead.New(bulkhead.Limit(2), bulkhead.WithObserver(observe.Func(func(_ context.Context, e observe.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})))
	if err != nil {
		t.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	cc := testserver.Dial(t, "passthrough:///notifications")
	b := newBlocker()
	wg := fill(t, unary, cc, b, 2)
	if n, limit, _ := ic.InFlight(cc.Target(), ""); n != 2 || limit != 2 {
		t.Fatalf("in flight %d of %d", n, limit)
	}
	sent := false
	err = unary(context.Background(), method, nil, nil, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		sent = true
		return nil
	})
	r, ok := outcome.AsRejection(err)
	if sent || !ok || r.Layer != "bulkhead" || status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "passthrough:///notifications") {
		t.Fatalf("full bulkhead: sent=%v err=%v", sent, err)
	}
	if outcome.Default.Classify(err) != outcome.Ignored {
		t.Fatal("a bulkhead rejection must not count against the target")
	}
	// Another target is unaffected.
	if err := unary(context.Background(), method, nil, nil, testserver.Dial(t, "passthrough:///payments"), noop); err != nil {
		t.Fatalf("other target: %v", err)
	}
	close(b.release)
	wg.Wait()
	if err := unary(context.Background(), method, nil, nil, cc, noop); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if len(events) != 1 || events[0].Kind != observe.BulkheadRejected || events[0].Target != cc.Target() || events[0].Value != 2 {
		t.Fatalf("events %+v", events)
	}
}

func TestBoundedWait(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	ic, err := bulkhead.New(bulkhead.Limit(1), bulkhead.MaxWait(50*time.Millisecond), bulkhead.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	cc := testserver.Dial(t, "passthrough:///notifications")
	b := newBlocker()
	wg := fill(t, unary, cc, b, 1)

	// Times out after MaxWait.
	done := make(chan error)
	go func() { done <- unary(context.Background(), method, nil, nil, cc, noop) }()
	clk.BlockUntil(1)
	clk.Advance(50 * time.Millisecond)
	if err := <-done; status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "50ms") {
		t.Fatalf("after the wait: %v", err)
	}
	// Gets the slot when it frees up in time.
	go func() { done <- unary(context.Background(), method, nil, nil, cc, noop) }()
	clk.BlockUntil(1)
	b.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	// A waiter whose context ends fails with the context's status.
	wg.Wait()
	wg = fill(t, unary, cc, b, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- unary(ctx, method, nil, nil, cc, noop) }()
	clk.BlockUntil(1)
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled waiter: %v", err)
	}
	close(b.release)
	wg.Wait()
}

func TestPerMethod(t *testing.T) {
	ic, err := bulkhead.New(bulkhead.PerMethod(), bulkhead.Limit(5), bulkhead.MethodLimit(method, 1), bulkhead.TargetLimit("passthrough:///x", 3))
	if err != nil {
		t.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	cc := testserver.Dial(t, "passthrough:///x")
	b := newBlocker()
	wg := fill(t, unary, cc, b, 1)
	if err := unary(context.Background(), method, nil, nil, cc, noop); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("method limit: %v", err)
	}
	if err := unary(context.Background(), "/a.B/C", nil, nil, cc, noop); err != nil {
		t.Fatalf("another method: %v", err)
	}
	us := ic.Usages()
	if len(us) != 2 || us[1].Method != method || us[1].Limit != 1 || us[1].InFlight != 1 || us[0].Limit != 3 {
		t.Fatalf("usages %+v", us)
	}
	close(b.release)
	wg.Wait()
}

// TestRegistryBound: a registry full of busy compartments grows rather
// than let a new target's calls pass unlimited, and idle compartments make
// room again.
func TestRegistryBound(t *testing.T) {
	ic, _ := bulkhead.New(bulkhead.Limit(1), bulkhead.WithMaxTargets(1))
	unary := ic.UnaryClientInterceptor()
	a, c := testserver.Dial(t, "passthrough:///a"), testserver.Dial(t, "passthrough:///c")
	ba, bc := newBlocker(), newBlocker()
	wga := fill(t, unary, a, ba, 1)
	wgc := fill(t, unary, c, bc, 1)
	if err := unary(context.Background(), method, nil, nil, c, noop); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a second call to c while a's compartment is busy: %v, want it limited", err)
	}
	if n := len(ic.Usages()); n != 2 {
		t.Fatalf("%d compartments, want 2", n)
	}
	close(ba.release)
	close(bc.release)
	wga.Wait()
	wgc.Wait()
	// Both are idle now: a third target takes the place of one.
	d := testserver.Dial(t, "passthrough:///d")
	if err := unary(context.Background(), method, nil, nil, d, noop); err != nil {
		t.Fatal(err)
	}
	if us := ic.Usages(); len(us) != 2 {
		t.Fatalf("usages %+v, want 2", us)
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opts []bulkhead.Option
		want string
	}{
		{[]bulkhead.Option{bulkhead.Limit(0)}, "bulkhead.Limit(0)"},
		{[]bulkhead.Option{bulkhead.TargetLimit("", 1)}, "bulkhead.TargetLimit"},
		{[]bulkhead.Option{bulkhead.MethodLimit("x", 1)}, "bulkhead.MethodLimit"},
		{[]bulkhead.Option{bulkhead.MethodLimit(method, 1)}, "needs PerMethod"},
		{[]bulkhead.Option{bulkhead.MaxWait(-1)}, "bulkhead.MaxWait"},
		{[]bulkhead.Option{bulkhead.WithMaxTargets(0)}, "bulkhead.WithMaxTargets"},
		{[]bulkhead.Option{bulkhead.WithClock(nil)}, "bulkhead.WithClock"},
	} {
		if _, err := bulkhead.New(tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// server serves PlainService and TunedService.Watch; calls with payload
// "block" wait until release is closed.
type server struct {
	policytestv1.UnimplementedPlainServiceServer
	policytestv1.UnimplementedTunedServiceServer
	started chan struct{}
	release chan struct{}
}

func (s *server) Plain(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	if r.GetPayload() == "block" {
		s.started <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &policytestv1.PingResponse{Payload: r.GetPayload()}, nil
}

func (s *server) Watch(r *policytestv1.PingRequest, st grpc.ServerStreamingServer[policytestv1.PingResponse]) error {
	for range 2 {
		if err := st.Send(&policytestv1.PingResponse{Payload: r.GetPayload()}); err != nil {
			return err
		}
	}
	return nil
}

func startServer(t *testing.T, ic *bulkhead.Interceptor) (*server, *grpc.ClientConn) {
	t.Helper()
	s := &server{started: make(chan struct{}, 100), release: make(chan struct{})}
	addr := testserver.Serve(t, testserver.Policytest(s))
	return s, testserver.Dial(t, addr, testserver.Through(ic)...)
}

// The seed's example: payments keep working while notifications are
// saturated.
func TestIntegrationSaturatedTargetLeavesOthersAlone(t *testing.T) {
	ic, err := bulkhead.New(bulkhead.Limit(3))
	if err != nil {
		t.Fatal(err)
	}
	notif, notifCC := startServer(t, ic)
	_, payCC := startServer(t, ic)
	notifications := policytestv1.NewPlainServiceClient(notifCC)
	payments := policytestv1.NewPlainServiceClient(payCC)
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := notifications.Plain(ctx, &policytestv1.PingRequest{Payload: "block"}); err != nil {
				t.Errorf("blocked notification: %v", err)
			}
		}()
	}
	for range 3 {
		<-notif.started
	}
	if _, err := notifications.Plain(ctx, &policytestv1.PingRequest{Payload: "x"}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("saturated notifications: %v", err)
	}
	for i := range 10 {
		if r, err := payments.Plain(ctx, &policytestv1.PingRequest{Payload: "pay"}); err != nil || r.GetPayload() != "pay" {
			t.Fatalf("payment %d: %v", i, err)
		}
	}
	close(notif.release)
	wg.Wait()
	if _, err := notifications.Plain(ctx, &policytestv1.PingRequest{Payload: "x"}); err != nil {
		t.Fatalf("notifications after the burst: %v", err)
	}
}

func TestIntegrationStreamsHoldSlots(t *testing.T) {
	ic, err := bulkhead.New(bulkhead.Limit(1))
	if err != nil {
		t.Fatal(err)
	}
	_, cc := startServer(t, ic)
	client := policytestv1.NewTunedServiceClient(cc)
	ctx := context.Background()
	s, err := client.Watch(ctx, &policytestv1.PingRequest{Payload: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Watch(ctx, &policytestv1.PingRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second stream while the first is open: %v", err)
	}
	for {
		if _, err := s.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	// An abandoned stream gives its slot back when its context ends.
	sctx, cancel := context.WithCancel(ctx)
	if _, err := client.Watch(sctx, &policytestv1.PingRequest{}); err != nil {
		t.Fatalf("after the first stream ended: %v", err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _, _ := ic.InFlight(cc.Target(), "")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a cancelled stream kept its slot")
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkBulkhead(b *testing.B) {
	ic, _ := bulkhead.New()
	unary := ic.UnaryClientInterceptor()
	cc := testserver.Dial(b, "passthrough:///payments")
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = unary(ctx, method, nil, nil, cc, noop)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = unary(ctx, method, nil, nil, cc, noop)
			}
		})
	})
}

func BenchmarkBulkheadFull(b *testing.B) {
	ic, _ := bulkhead.New(bulkhead.Limit(1))
	unary := ic.UnaryClientInterceptor()
	cc := testserver.Dial(b, "passthrough:///payments")
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{})
	go unary(ctx, method, nil, nil, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		close(started)
		<-release
		return nil
	})
	<-started
	b.ReportAllocs()
	for b.Loop() {
		_ = unary(ctx, method, nil, nil, cc, noop)
	}
	close(release)
}

// TestStress checks under -race that the limit holds and that every
// waiter is served, with many goroutines contending for a few slots.
func TestStress(t *testing.T) {
	const limit, goroutines, calls = 4, 32, 200
	ic, err := bulkhead.New(bulkhead.Limit(limit), bulkhead.MaxWait(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	unary := ic.UnaryClientInterceptor()
	cc := testserver.Dial(t, "passthrough:///stress")
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				err := unary(context.Background(), method, nil, nil, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					n := cur.Add(1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					runtime.Gosched()
					cur.Add(-1)
					return nil
				})
				if err != nil {
					t.Errorf("a waiter was not served: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Fatalf("%d calls in flight, limit %d", peak.Load(), limit)
	}
	if n, _, _ := ic.InFlight(cc.Target(), ""); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
}
