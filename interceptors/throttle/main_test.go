package throttle

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft/interceptors/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// conn returns a ClientConn that is never connected: the interceptors only
// read its Target, and the tests' invokers never use it.
func conn(t testing.TB, target string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// fixed returns a random source that always returns u.
func fixed(u float64) func() float64 { return func() float64 { return u } }

// harness drives the unary interceptor over an invoker that returns err.
type harness struct {
	t     *Interceptor
	clk   *clock.Fake
	cc    *grpc.ClientConn
	unary grpc.UnaryClientInterceptor
	sent  int
}

func newHarness(tb testing.TB, opts ...Option) *harness {
	tb.Helper()
	clk := clock.NewFake(epoch)
	th, err := New(append([]Option{WithClock(clk)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return &harness{t: th, clk: clk, cc: conn(tb, "passthrough:///svc"), unary: th.UnaryClientInterceptor()}
}

// call makes one call whose invoker returns result; it returns what the
// caller saw.
func (h *harness) call(result error) error {
	return h.unary(context.Background(), "/svc.v1.S/M", nil, nil, h.cc,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			h.sent++
			return result
		})
}

func (h *harness) state() State { return h.t.State(h.cc.Target()) }
