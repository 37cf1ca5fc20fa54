package idempotency_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func noopInvoker(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return nil
}

func benchClient(b *testing.B, method string, ctx context.Context) {
	cc := testserver.Dial(b, "passthrough:///bench")
	intercept := newClient(b).UnaryClientInterceptor()
	req, reply := &policytestv1.PingRequest{}, &policytestv1.PingResponse{}
	b.ReportAllocs()
	for b.Loop() {
		if err := intercept(ctx, method, req, reply, cc, noopInvoker); err != nil {
			b.Fatal(err)
		}
	}
}

// The budget: key injection with a generated key, the common case.
func BenchmarkClientKeyInjection(b *testing.B) {
	benchClient(b, keyedWrite, context.Background())
}

func BenchmarkClientKeyInjectionCallerKey(b *testing.B) {
	benchClient(b, keyedWrite, idempotency.WithKey(context.Background(), "order-2026-000042"))
}

func BenchmarkClientKeyInjectionParallel(b *testing.B) {
	cc := testserver.Dial(b, "passthrough:///bench")
	intercept := newClient(b).UnaryClientInterceptor()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, reply := &policytestv1.PingRequest{}, &policytestv1.PingResponse{}
		for pb.Next() {
			if err := intercept(context.Background(), keyedWrite, req, reply, cc, noopInvoker); err != nil {
				b.Error(err)
			}
		}
	})
}

// A method that needs no key: the price of having the interceptor there.
func BenchmarkClientNoKeyMethod(b *testing.B) {
	benchClient(b, inherit, context.Background())
}

// What gRPC itself charges to put one entry in the outgoing metadata: the
// floor under key injection.
func BenchmarkAppendToOutgoingContext(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, "9b2f0c4e-3c1d-4f6e-8a6b-2f1d0e9c7a55")
	}
}

func BenchmarkNewKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = idempotency.NewKey()
	}
}

// headerStream is a grpc.ServerTransportStream that accepts headers, so
// that the replay path runs as under a real server.
type headerStream struct{}

func (headerStream) Method() string                  { return keyedWrite }
func (headerStream) SetHeader(metadata.MD) error     { return nil }
func (headerStream) SendHeader(metadata.MD) error    { return nil }
func (headerStream) SetTrailer(md metadata.MD) error { return nil }

// The server's replay path with the memory store: everything between the
// decoded request and the response handed back to gRPC.
func BenchmarkServerReplay(b *testing.B) {
	srv, err := idempotency.NewServer(idempotency.WithIdentity(idempotency.PeerIdentity))
	if err != nil {
		b.Fatal(err)
	}
	intercept := srv.UnaryServerInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(policy.KeyMetadata, "9b2f0c4e-3c1d-4f6e-8a6b-2f1d0e9c7a55"))
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}})
	ctx = grpc.NewContextWithServerTransportStream(ctx, headerStream{})
	info := &grpc.UnaryServerInfo{FullMethod: keyedWrite}
	req := &policytestv1.PingRequest{Payload: "charge 12.50 EUR to account 1234"}
	runs := 0
	handler := func(context.Context, any) (any, error) {
		runs++
		return &policytestv1.PingResponse{Payload: "receipt-1"}, nil
	}
	if _, err := intercept(ctx, req, info, handler); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := intercept(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
	if runs != 1 {
		b.Fatalf("handler ran %d times", runs)
	}
}

// The first run of a key: claim, handler, store.
func BenchmarkServerFirstRun(b *testing.B) {
	st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 1 << 30, MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := idempotency.NewServer(idempotency.WithStore(st), idempotency.WithIdentity(idempotency.PeerIdentity))
	if err != nil {
		b.Fatal(err)
	}
	intercept := srv.UnaryServerInterceptor()
	base := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}})
	base = grpc.NewContextWithServerTransportStream(base, headerStream{})
	info := &grpc.UnaryServerInfo{FullMethod: keyedWrite}
	req := &policytestv1.PingRequest{Payload: "charge 12.50 EUR to account 1234"}
	handler := func(context.Context, any) (any, error) { return &policytestv1.PingResponse{Payload: "receipt-1"}, nil }
	b.ReportAllocs()
	for b.Loop() {
		ctx := metadata.NewIncomingContext(base, metadata.Pairs(policy.KeyMetadata, idempotency.NewKey()))
		if _, err := intercept(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}

// Claim and complete of a new key in a MemoryStore that is empty, and in
// one that is full of another identity's outcomes (every new key then
// evicts one) or of expired entries (every new key expires some first).
func BenchmarkMemoryClaimComplete(b *testing.B) {
	const size = 100_000
	for _, tc := range []struct {
		name string
		fill func(st *idempotency.MemoryStore, clk *clock.Fake)
	}{
		{"empty", func(*idempotency.MemoryStore, *clock.Fake) {}},
		{"full", func(st *idempotency.MemoryStore, _ *clock.Fake) { fillMemory(b, st, "other", size) }},
		{"full of expired", func(st *idempotency.MemoryStore, clk *clock.Fake) {
			fillMemory(b, st, "other", size)
			clk.Advance(2 * time.Hour)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			clk := clock.NewFake(time.Unix(1e9, 0))
			st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: size, MaxBytes: 1 << 30, Clock: clk})
			if err != nil {
				b.Fatal(err)
			}
			tc.fill(st, clk)
			ctx := context.Background()
			o := &idempotency.Outcome{ResponseType: "t", Response: []byte("receipt")}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				k := idempotency.Key{Identity: "caller", Method: keyedWrite, Key: strconv.Itoa(i)}
				i++
				c, err := st.Claim(ctx, k, idempotency.Fingerprint{}, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Complete(ctx, k, c.Token, idempotency.Fingerprint{}, o, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func fillMemory(b *testing.B, st *idempotency.MemoryStore, identity string, n int) {
	ctx := context.Background()
	for i := range n {
		k := idempotency.Key{Identity: identity, Method: keyedWrite, Key: strconv.Itoa(i)}
		c, err := st.Claim(ctx, k, idempotency.Fingerprint{}, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Complete(ctx, k, c.Token, idempotency.Fingerprint{}, &idempotency.Outcome{}, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
