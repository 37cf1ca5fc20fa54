package harness

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft"
)

// TestLayerBreakdown times loopback calls through the suite built with
// fewer layers, and through single interceptors that do part of its work,
// each interleaved with the plain client that sets the same deadline (see
// Interleaved): where a loopback call's extra time goes. It runs only when
// FAILSOFT_LAYER_CALLS gives the calls per chain and round, for example
//
//	FAILSOFT_LAYER_CALLS=8000 go test -run TestLayerBreakdown -v ./harness
func TestLayerBreakdown(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("FAILSOFT_LAYER_CALLS"))
	if err != nil || n <= 0 {
		t.Skip("FAILSOFT_LAYER_CALLS is not set")
	}
	var ref Spec
	for _, s := range Specs() {
		if s.Name == "plain client, caller deadline" {
			ref = s
		}
	}
	interceptor := func(name string, i grpc.UnaryClientInterceptor) Spec {
		return Spec{Name: name, Interceptors: true, Build: func(Params) (*Chain, error) {
			return &Chain{Dial: []grpc.DialOption{grpc.WithChainUnaryInterceptor(i)}}, nil
		}}
	}
	suite := func(name string, o ...failsoft.Option) Spec {
		return Spec{Name: name, Interceptors: true, Build: func(p Params) (*Chain, error) {
			res, err := benchResolver(p)
			if err != nil {
				return nil, err
			}
			dial, err := failsoft.DialOptions(append([]failsoft.Option{failsoft.WithResolver(res), failsoft.WithoutTelemetry(), failsoft.WithoutFallback()}, o...)...)
			if err != nil {
				return nil, err
			}
			return &Chain{Dial: dial}, nil
		}}
	}
	// callerDeadline makes the caller set the deadline, as the reference
	// does, instead of the chain.
	callerDeadline := func(s Spec) Spec {
		build := s.Build
		s.Build = func(p Params) (*Chain, error) {
			c, err := build(p)
			if err == nil {
				c.CallerTimeout = p.Timeout
			}
			return c, err
		}
		return s
	}
	timeout := DefaultParams().Timeout
	// deadlineOnly leaves the deadline layer alone in the suite; pickFirst
	// replaces the load-balancing default with grpc-go's own default.
	deadlineOnly := []failsoft.Option{failsoft.WithoutIdempotency(), failsoft.WithoutRetry(), failsoft.WithoutThrottle(), failsoft.WithoutBreaker()}
	pickFirst := []failsoft.Option{failsoft.WithoutOutlierEjection(), failsoft.WithLoadBalancing(`[{"pick_first":{}}]`)}
	with := func(a []failsoft.Option, b ...failsoft.Option) []failsoft.Option {
		return append(append([]failsoft.Option{}, a...), b...)
	}
	specs := []Spec{
		ref,
		interceptor("one interceptor: context.WithTimeout", func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return invoke(ctx, method, req, reply, cc, opts...)
		}),
		interceptor("one interceptor: context.WithTimeout, grpc.Trailer", func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var md metadata.MD
			return invoke(ctx, method, req, reply, cc, append(opts, grpc.Trailer(&md))...)
		}),
		// The suite's skeleton: its interceptor, pushback marking and
		// load-balancing default, with the caller setting the deadline.
		callerDeadline(suite("suite: no layers, caller's deadline", with(deadlineOnly, failsoft.WithoutDeadline())...)),
		callerDeadline(suite("suite: deadline, caller's deadline", deadlineOnly...)),
		suite("suite: deadline", deadlineOnly...),
		suite("suite: deadline, retry", failsoft.WithoutIdempotency(), failsoft.WithoutThrottle(), failsoft.WithoutBreaker()),
		suite("suite: deadline, retry, throttle", failsoft.WithoutIdempotency(), failsoft.WithoutBreaker()),
		suite("suite: deadline, retry, throttle, breaker", failsoft.WithoutIdempotency()),
		// The chain the cost goals name: no adaptive throttle.
		suite("suite: deadline, key, retry, breaker", failsoft.WithoutThrottle()),
		suite("suite: whole"),
		// The goals' chain without the load-balancing default (round_robin
		// under outlier ejection), and with round_robin alone.
		suite("suite: goals' chain, pick_first", with(pickFirst, failsoft.WithoutThrottle())...),
		suite("suite: deadline, pick_first", with(deadlineOnly, pickFirst...)...),
		suite("suite: deadline, round_robin", with(deadlineOnly, failsoft.WithoutOutlierEjection())...),
		suite("suite: goals' chain, round_robin", failsoft.WithoutThrottle(), failsoft.WithoutOutlierEjection()),
	}
	for _, s := range specs {
		for range 2 {
			start := time.Now()
			r, err := Interleaved(ref, s, DefaultParams(), Loopback, n)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%-50s %+.1f%% (%v)", s.Name, 100*(r.Ratio()-1), time.Since(start).Round(time.Second))
		}
	}
}
