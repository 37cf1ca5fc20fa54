//go:build !race

package chain

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
)

type pass struct{}

func (pass) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next UnaryNext, opts ...grpc.CallOption) error {
	next.MayRetry = true
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

func (pass) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return next.NewStream(ctx, desc, cc, method, opts...)
}

// TestAllocs pins the reason for the package: running layers costs no
// allocation, and a pending deadline costs context.WithDeadline's own.
func TestAllocs(t *testing.T) {
	layers := []Unary{pass{}, pass{}, pass{}, pass{}, pass{}, pass{}, pass{}, pass{}, pass{}, pass{}}
	final := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	opts := []grpc.CallOption{marker{}}
	ctx := context.Background()
	unaries := NewUnaries(layers...)
	if n := testing.AllocsPerRun(100, func() {
		_ = unaries.Start(final).Invoke(ctx, "/s/m", nil, nil, nil, opts...)
	}); n != 0 {
		t.Errorf("ten layers: %v allocs per call, want 0", n)
	}
	slayers := []Stream{pass{}, pass{}, pass{}, pass{}, pass{}}
	sfinal := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return nil, nil
	}
	desc := &grpc.StreamDesc{}
	streams := NewStreams(slayers...)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = streams.Start(sfinal).NewStream(ctx, desc, nil, "/s/m", opts...)
	}); n != 0 {
		t.Errorf("five stream layers: %v allocs per stream, want 0", n)
	}

	bare := testing.AllocsPerRun(100, func() {
		_, cancel := context.WithDeadline(ctx, time.Now().Add(time.Hour))
		cancel()
	})
	pending := func(ctx context.Context, next UnaryNext) error {
		next.Deadline = time.Now().Add(time.Hour)
		return next.Invoke(ctx, "/s/m", nil, nil, nil)
	}
	withPending := NewUnaries(append([]Unary{layerFunc(pending)}, layers...)...)
	if n := testing.AllocsPerRun(100, func() {
		_ = withPending.Start(final).Invoke(ctx, "/s/m", nil, nil, nil)
	}); n != bare {
		t.Errorf("a pending deadline: %v allocs per call, want context.WithDeadline's %v", n, bare)
	}
}
