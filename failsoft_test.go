package failsoft_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/throttle"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type plainServer struct {
	policytestv1.UnimplementedPlainServiceServer
	calls atomic.Int32
	code  codes.Code
	// failFirst makes the first calls fail with code, then succeed.
	failFirst int32
}

func (s *plainServer) Plain(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	n := s.calls.Add(1)
	if s.code != codes.OK && (s.failFirst == 0 || n <= s.failFirst) {
		return nil, status.Error(s.code, "injected")
	}
	return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
}

func (s *plainServer) NoSideEffects(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return s.Plain(ctx, req)
}

func serve(t *testing.T, srv *plainServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	policytestv1.RegisterPlainServiceServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) policytestv1.PlainServiceClient {
	t.Helper()
	return policytestv1.NewPlainServiceClient(dialConn(t, addr, opts...))
}

func dialConn(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestDialOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts []failsoft.Option
		want string
	}{
		{"nil option", []failsoft.Option{nil}, "nil Option"},
		{"layer twice", []failsoft.Option{failsoft.WithDeadline(), failsoft.WithoutDeadline()}, "deadline layer is configured twice"},
		{"throttle twice", []failsoft.Option{failsoft.WithThrottle(), failsoft.WithThrottle()}, "throttle layer is configured twice"},
		{"bad deadline value", []failsoft.Option{failsoft.WithDeadline(deadline.WithDefaultTimeout(-time.Second))}, "deadline layer"},
		{"bad throttle value", []failsoft.Option{failsoft.WithThrottle(throttle.WithMultiplier(0.5))}, "throttle layer"},
		{"two bad deadline values", []failsoft.Option{failsoft.WithDeadline(deadline.WithDefaultTimeout(-time.Second), deadline.WithMinBudget(-time.Second))}, "failsoft: deadline layer: deadline.WithMinBudget"},
		{"nil resolver", []failsoft.Option{failsoft.WithResolver(nil)}, "WithResolver"},
		{"nil observer", []failsoft.Option{failsoft.WithObserver(nil)}, "WithObserver"},
		{"nil clock", []failsoft.Option{failsoft.WithClock(nil)}, "WithClock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := failsoft.DialOptions(tc.opts...)
			if err != nil {
				// Every line of a layer's joined errors names the layer.
				for _, line := range strings.Split(err.Error(), "\n") {
					if !strings.HasPrefix(line, "failsoft") {
						t.Errorf("error line %q does not say where it comes from", line)
					}
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DialOptions: err = %v, want it to contain %q", err, tc.want)
			}
			if got != nil {
				t.Fatal("options returned along with an error")
			}
		})
	}
}

func TestSuiteKeepsPlainSemantics(t *testing.T) {
	tests := []struct {
		name string
		code codes.Code
	}{
		{"ok", codes.OK},
		{"not found", codes.NotFound},
		{"unavailable, not idempotent", codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &plainServer{code: tc.code}
			opts, err := failsoft.DialOptions()
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, serve(t, srv), opts...)
			resp, err := c.Plain(context.Background(), &policytestv1.PingRequest{Payload: "hi"})
			if status.Code(err) != tc.code {
				t.Fatalf("code %v, want %v (%v)", status.Code(err), tc.code, err)
			}
			if tc.code == codes.OK && resp.GetPayload() != "hi" {
				t.Fatalf("payload %q", resp.GetPayload())
			}
			if srv.calls.Load() != 1 {
				t.Fatalf("a method that is not idempotent reached the server %d times", srv.calls.Load())
			}
		})
	}
}

func TestSuiteRetriesOnlySafeMethods(t *testing.T) {
	tests := []struct {
		name      string
		safe      bool
		wantCode  codes.Code
		wantCalls int32
	}{
		{"idempotency_level NO_SIDE_EFFECTS: retried until it succeeds", true, codes.OK, 3},
		{"no idempotency stated: one attempt", false, codes.Unavailable, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &plainServer{code: codes.Unavailable, failFirst: 2}
			opts, err := failsoft.DialOptions()
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, serve(t, srv), opts...)
			call := c.Plain
			if tc.safe {
				call = c.NoSideEffects
			}
			_, err = call(context.Background(), &policytestv1.PingRequest{Payload: "x"})
			if status.Code(err) != tc.wantCode || srv.calls.Load() != tc.wantCalls {
				t.Fatalf("code %v after %d calls, want %v after %d (%v)", status.Code(err), srv.calls.Load(), tc.wantCode, tc.wantCalls, err)
			}
		})
	}
}

func TestTwoSuitesRefused(t *testing.T) {
	a, err := failsoft.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	b, err := failsoft.DialOptions(failsoft.WithoutRetry(), failsoft.WithoutDeadline(), failsoft.WithoutBreaker())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dial []grpc.DialOption
		call []grpc.CallOption
	}{
		{"two suites", append(append([]grpc.DialOption{}, a...), b...), nil},
		{"two suites, call with options", append(append([]grpc.DialOption{}, b...), a...), []grpc.CallOption{grpc.WaitForReady(false)}},
		{"one suite installed twice", append(append([]grpc.DialOption{}, a...), a...), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &plainServer{}
			cc := dialConn(t, serve(t, srv), tc.dial...)
			_, err := policytestv1.NewPlainServiceClient(cc).Plain(context.Background(), &policytestv1.PingRequest{}, tc.call...)
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "two failsoft suites") {
				t.Fatalf("unary: err = %v", err)
			}
			desc := &grpc.StreamDesc{ServerStreams: true}
			_, err = cc.NewStream(context.Background(), desc, policytestv1.PlainService_Plain_FullMethodName, tc.call...)
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "two failsoft suites") {
				t.Fatalf("stream: err = %v", err)
			}
			if srv.calls.Load() != 0 {
				t.Fatal("a call through two suites was sent")
			}
		})
	}
}

// TestOneSuiteKeepsCallOptions: the marker the suite adds to a call's
// options never reaches the caller's slice.
func TestOneSuiteKeepsCallOptions(t *testing.T) {
	suite, err := failsoft.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	srv := &plainServer{}
	c := dial(t, serve(t, srv), suite...)
	var trailer metadata.MD
	opts := make([]grpc.CallOption, 1, 4)
	opts[0] = grpc.Trailer(&trailer)
	for range 3 {
		if _, err := c.Plain(context.Background(), &policytestv1.PingRequest{}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	if opts[:2][1] != nil {
		t.Fatalf("the caller's options were written to: %v", opts[:2])
	}
	if srv.calls.Load() != 3 {
		t.Fatalf("%d calls reached the server, want 3", srv.calls.Load())
	}
}

// TestWithLoadBalancingErrors: a load-balancing config that is not a JSON
// list of policies, or one given twice, is refused naming the option.
func TestWithLoadBalancingErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []failsoft.Option
		want string
	}{
		{"not JSON", []failsoft.Option{failsoft.WithLoadBalancing("round_robin")}, "failsoft.WithLoadBalancing"},
		{"empty list", []failsoft.Option{failsoft.WithLoadBalancing("[]")}, "failsoft.WithLoadBalancing"},
		{"twice", []failsoft.Option{failsoft.WithLoadBalancing(""), failsoft.WithLoadBalancing("")}, "given twice"},
	} {
		if _, err := failsoft.DialOptions(tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one with %q", tc.name, err, tc.want)
		}
	}
}
