package chaos_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/chaos"
)

func noopHandler(context.Context, any) (any, error) { return nil, nil }

func noopInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

// offInjectors are the states in which an injector injects nothing into a
// call: never enabled, rules set but not enabled, and enabled with rules
// for other methods.
func offInjectors(t testing.TB) map[string]*chaos.Injector {
	down := chaos.Rule{Match: "/q.Other/*", Faults: chaos.Faults{Down: true}}
	return map[string]*chaos.Injector{
		"new":         mustNew(t, chaos.Config{}),
		"not enabled": mustNew(t, chaos.Config{Rules: []chaos.Rule{{Match: "*", Faults: chaos.Faults{Down: true}}}}),
		"no match":    mustNew(t, on(down)),
	}
}

// The path of a call no fault applies to allocates nothing on either side.
func TestOffPathAllocs(t *testing.T) {
	ctx := context.Background()
	info := &grpc.UnaryServerInfo{FullMethod: method}
	for name, inj := range offInjectors(t) {
		srv, cli := inj.UnaryServerInterceptor(), inj.UnaryClientInterceptor()
		if n := testing.AllocsPerRun(100, func() { _, _ = srv(ctx, nil, info, noopHandler) }); n != 0 {
			t.Errorf("%s: server %v allocations per call, want 0", name, n)
		}
		if n := testing.AllocsPerRun(100, func() { _ = cli(ctx, method, nil, nil, nil, noopInvoker) }); n != 0 {
			t.Errorf("%s: client %v allocations per call, want 0", name, n)
		}
	}
}

// BenchmarkOff compares a call through an injector that injects nothing
// with the handler called directly.
func BenchmarkOff(b *testing.B) {
	ctx := context.Background()
	info := &grpc.UnaryServerInfo{FullMethod: method}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = noopHandler(ctx, nil)
		}
	})
	for name, inj := range offInjectors(b) {
		srv, cli := inj.UnaryServerInterceptor(), inj.UnaryClientInterceptor()
		b.Run("server/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = srv(ctx, nil, info, noopHandler)
			}
		})
		b.Run("client/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = cli(ctx, method, nil, nil, nil, noopInvoker)
			}
		})
	}
}

// BenchmarkOn is a call through an enabled rule that draws faults but
// injects none, for scale.
func BenchmarkOn(b *testing.B) {
	ctx := context.Background()
	info := &grpc.UnaryServerInfo{FullMethod: method}
	inj := mustNew(b, on(chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorRate: 1e-9, LostRate: 1e-9}}))
	srv := inj.UnaryServerInterceptor()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = srv(ctx, nil, info, noopHandler)
	}
}
