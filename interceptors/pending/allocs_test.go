//go:build !race

package pending_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/pending"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// Calls of methods that are not opted in pass through without cost; an
// opted-in call that succeeds pays only for its key when it has none.
func TestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	q := newQueue(t, newStore(t, 10))
	ic := q.UnaryClientInterceptor()
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	req, reply := &policytestv1.PingRequest{}, &policytestv1.PingResponse{}
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _ = ic(ctx, plain, req, reply, nil, ok) }); n != 0 {
		t.Errorf("a method not opted in: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ic(ctx, keyedWrite, req, reply, nil, ok) }); n > 6 {
		t.Errorf("an opted-in call without a key: %v allocs, want at most 6 (the key and its metadata)", n)
	}
}

func BenchmarkInterceptorSuccess(b *testing.B) {
	store, _ := pending.NewMemoryStore(10)
	q, _ := pending.New(store, pending.ForMethods(keyedWrite))
	defer q.Close()
	ic := q.UnaryClientInterceptor()
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	req, reply := &policytestv1.PingRequest{}, &policytestv1.PingResponse{}
	b.ReportAllocs()
	for b.Loop() {
		_ = ic(context.Background(), keyedWrite, req, reply, nil, ok)
	}
}
