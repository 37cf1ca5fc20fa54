package deadline_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/observe"
)

func nopInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// benchStream is a reusable stream whose RecvMsg ends it at once.
type benchStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s *benchStream) Context() context.Context { return s.ctx }
func (s *benchStream) RecvMsg(any) error        { return io.EOF }

var nopObserver = observe.Func(func(context.Context, observe.Event) {})

// benchCase is one way a call meets the interceptor: with a caller's
// deadline that is already the earliest (passed through), or without one
// (a deadline is added).
type benchCase struct {
	name     string
	deadline time.Duration // caller's deadline from now; 0 for none
	method   string
	observed bool
}

var benchCases = []benchCase{
	{"caller_earliest", time.Hour, mLong, false},
	{"caller_only", time.Hour, mPlain, false},
	{"caller_earliest_observed", time.Hour, mLong, true},
	{"policy_added", 0, mInherit, false},
	{"default_added", 0, mPlain, false},
	{"policy_added_observed", 0, mInherit, true},
}

func (c benchCase) setup(tb testing.TB) (*deadline.Interceptor, context.Context) {
	tb.Helper()
	opts := []deadline.Option{deadline.WithResolver(testResolver(tb))}
	if c.observed {
		opts = append(opts, deadline.WithObserver(nopObserver))
	}
	dl, err := deadline.New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if c.deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.deadline)
		tb.Cleanup(cancel)
	}
	return dl, ctx
}

func BenchmarkUnaryClient(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			dl, ctx := c.setup(b)
			unary := dl.UnaryClientInterceptor()
			b.ReportAllocs()
			for b.Loop() {
				if err := unary(ctx, c.method, nil, nil, nil, nopInvoker); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkContextWithDeadline is the floor for calls that need a deadline
// added: context.WithDeadline and its cancel, nothing else.
func BenchmarkContextWithDeadline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, cancel := context.WithDeadline(context.Background(), time.Now().Add(5*time.Second))
		cancel()
	}
}

func BenchmarkStreamClient(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			dl, ctx := c.setup(b)
			stream := dl.StreamClientInterceptor()
			bs := &benchStream{}
			streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
				bs.ctx = ctx
				return bs, nil
			}
			b.ReportAllocs()
			for b.Loop() {
				cs, err := stream(ctx, serverStreaming, nil, c.method, streamer)
				if err != nil {
					b.Fatal(err)
				}
				_ = cs.RecvMsg(nil)
			}
		})
	}
}

func BenchmarkUnaryServer(b *testing.B) {
	dl, err := deadline.New()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	unary := dl.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: mPlain}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		_, _ = unary(ctx, nil, info, handler)
	}
}
