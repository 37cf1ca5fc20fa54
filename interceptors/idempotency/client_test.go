package idempotency_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// captured returns an invoker that records the keys in the outgoing
// metadata of each call.
func captured() (grpc.UnaryInvoker, func() [][]string) {
	var mu sync.Mutex
	var keys [][]string
	inv := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata))
		return nil
	}
	return inv, func() [][]string {
		mu.Lock()
		defer mu.Unlock()
		return keys
	}
}

func newClient(t testing.TB, opts ...idempotency.Option) *idempotency.Interceptor {
	t.Helper()
	i, err := idempotency.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestClientKeys(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///unused")
	long := strings.Repeat("k", idempotency.MaxKeyLen)
	tests := []struct {
		name     string
		method   string
		ctx      func(context.Context) context.Context
		wantKey  string // "" = a generated UUID, "-" = no key
		wantCode codes.Code
	}{
		{name: "generated", method: keyedWrite},
		{name: "not required", method: inherit, wantKey: "-"},
		{name: "caller key", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, "order-42") }, wantKey: "order-42"},
		{name: "caller key of max length", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, long) }, wantKey: long},
		{name: "caller key on method without key", method: inherit, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, "order-42") }, wantKey: "-"},
		{name: "empty caller key", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, "") }, wantCode: codes.InvalidArgument},
		{name: "too long", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, long+"k") }, wantCode: codes.InvalidArgument},
		{name: "not ASCII", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, "ключ") }, wantCode: codes.InvalidArgument},
		{name: "control byte", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, "a\nb") }, wantCode: codes.InvalidArgument},
		{name: "leading space", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(c, " a") }, wantCode: codes.InvalidArgument},
		{name: "key already in metadata", method: keyedWrite, ctx: func(c context.Context) context.Context { return withKeyMD(c, "from-md") }, wantKey: "from-md"},
		{name: "two keys in metadata", method: keyedWrite, ctx: func(c context.Context) context.Context { return withKeyMD(c, "a", "b") }, wantCode: codes.InvalidArgument},
		{name: "same key in metadata and WithKey", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(withKeyMD(c, "k"), "k") }, wantKey: "k"},
		{name: "different keys in metadata and WithKey", method: keyedWrite, ctx: func(c context.Context) context.Context { return idempotency.WithKey(withKeyMD(c, "k"), "j") }, wantCode: codes.InvalidArgument},
		{name: "invalid key in metadata", method: keyedWrite, ctx: func(c context.Context) context.Context { return withKeyMD(c, " a") }, wantCode: codes.InvalidArgument},
		{name: "broken policy", method: brokenv1.BrokenService_ZeroTimeout_FullMethodName, wantCode: codes.FailedPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx(ctx)
			}
			inv, keys := captured()
			err := newClient(t).UnaryClientInterceptor()(ctx, tc.method, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, cc, inv)
			if tc.wantCode != codes.OK {
				if status.Code(err) != tc.wantCode {
					t.Fatalf("err = %v, want code %v", err, tc.wantCode)
				}
				if len(keys()) != 0 {
					t.Fatal("the call was sent")
				}
				if tc.wantCode == codes.InvalidArgument {
					r, ok := outcome.AsRejection(err)
					if !ok || r.Layer != "idempotency" || r.Target != cc.Target() {
						t.Fatalf("err = %#v, want an idempotency Rejection for %s", err, cc.Target())
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := keys()[0]
			switch tc.wantKey {
			case "-":
				if len(got) != 0 {
					t.Fatalf("keys = %q, want none", got)
				}
			case "":
				if len(got) != 1 {
					t.Fatalf("keys = %q, want one", got)
				}
				u, err := uuid.Parse(got[0])
				if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != got[0] {
					t.Fatalf("key %q is not a canonical version 4 UUID (%v)", got[0], err)
				}
			default:
				if len(got) != 1 || got[0] != tc.wantKey {
					t.Fatalf("keys = %q, want [%q]", got, tc.wantKey)
				}
			}
		})
	}
}

// A retry layer inside the idempotency interceptor sends every attempt
// with the same key; each logical call gets a new one.
func TestClientOneKeyPerLogicalCall(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{} // payload -> keys of its attempts
	addr := serve(t, &tuned{keyed: func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		seen[r.Payload] = append(seen[r.Payload], metadata.ValueFromIncomingContext(ctx, policy.KeyMetadata)...)
		if len(seen[r.Payload]) < 3 {
			return nil, status.Error(codes.Unavailable, "try again")
		}
		return &policytestv1.PingResponse{}, nil
	}})
	cc := testserver.Dial(t, addr, grpc.WithChainUnaryInterceptor(newClient(t).UnaryClientInterceptor(), retryLoop(5, nil)))
	client := policytestv1.NewTunedServiceClient(cc)
	for _, p := range []string{"a", "b"} {
		if _, err := client.KeyedWrite(context.Background(), &policytestv1.PingRequest{Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
	for p, keys := range seen {
		if len(keys) != 3 || keys[0] != keys[1] || keys[1] != keys[2] {
			t.Errorf("%s: keys of the 3 attempts = %q, want one key", p, keys)
		}
	}
	if seen["a"][0] == seen["b"][0] {
		t.Errorf("two logical calls share the key %q", seen["a"][0])
	}
}

// retryLoop is a minimal retry interceptor for tests: it retries
// UNAVAILABLE and ABORTED immediately, up to max attempts, counting them.
func retryLoop(max int, attempts *int64) grpc.UnaryClientInterceptor {
	var mu sync.Mutex
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var err error
		for range max {
			if attempts != nil {
				mu.Lock()
				*attempts++
				mu.Unlock()
			}
			err = invoker(ctx, method, req, reply, cc, opts...)
			if c := status.Code(err); c != codes.Unavailable && c != codes.Aborted {
				return err
			}
		}
		return err
	}
}

func TestClientStream(t *testing.T) {
	resolver, err := policy.New(policy.WithMethod(watch, &failsoftv1.MethodPolicy{RequiresIdempotencyKey: proto.Bool(true)}))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := idempotency.NewServer(idempotency.WithResolver(resolver), idempotency.WithIdentity(idempotency.Unauthenticated))
	if err != nil {
		t.Fatal(err)
	}
	keys := make(chan []string, 2)
	addr := serve(t, &tuned{watch: func(r *policytestv1.PingRequest, ss grpc.ServerStreamingServer[policytestv1.PingResponse]) error {
		keys <- metadata.ValueFromIncomingContext(ss.Context(), policy.KeyMetadata)
		return ss.Send(&policytestv1.PingResponse{Payload: r.Payload})
	}}, grpc.StreamInterceptor(srv.StreamServerInterceptor()))

	// Through the client interceptor: the stream carries a key.
	cc := testserver.Dial(t, addr, grpc.WithStreamInterceptor(newClient(t, idempotency.WithResolver(resolver)).StreamClientInterceptor()))
	st, err := policytestv1.NewTunedServiceClient(cc).Watch(idempotency.WithKey(context.Background(), "stream-1"), &policytestv1.PingRequest{Payload: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || m.Payload != "x" {
		t.Fatalf("Recv = %v, %v", m, err)
	}
	if got := <-keys; len(got) != 1 || got[0] != "stream-1" {
		t.Fatalf("stream keys = %q, want [stream-1]", got)
	}

	// Without it: the server refuses the stream.
	plain := testserver.Dial(t, addr)
	st, err = policytestv1.NewTunedServiceClient(plain).Watch(context.Background(), &policytestv1.PingRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), policy.KeyMetadata) {
		t.Fatalf("stream without key: %v, want INVALID_ARGUMENT naming %s", err, policy.KeyMetadata)
	}

	// An invalid caller key is refused before the stream opens.
	streamer := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		t.Fatal("stream opened with an invalid key")
		return nil, nil
	}
	_, err = newClient(t, idempotency.WithResolver(resolver)).StreamClientInterceptor()(idempotency.WithKey(context.Background(), ""), &grpc.StreamDesc{}, cc, watch, streamer)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
}

func TestClientEvents(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///target-1")
	for _, raw := range []bool{false, true} {
		var ev events
		opts := []idempotency.Option{idempotency.WithObserver(&ev)}
		if raw {
			opts = append(opts, idempotency.WithRawKeysInEvents())
		}
		inv, _ := captured()
		ctx := idempotency.WithKey(context.Background(), "order-7")
		if err := newClient(t, opts...).UnaryClientInterceptor()(ctx, keyedWrite, nil, nil, cc, inv); err != nil {
			t.Fatal(err)
		}
		want := observe.Event{Kind: observe.KeyAttached, Method: keyedWrite, Target: "passthrough:///target-1", Reason: idempotency.KeyHash("order-7")}
		if raw {
			want.Reason = "order-7"
		}
		if got := ev.kinds(observe.KeyAttached); len(got) != 1 || got[0] != want {
			t.Errorf("raw=%v: events = %+v, want %+v", raw, got, want)
		}
	}
}

func TestKeyHash(t *testing.T) {
	// FNV-1a 64 of "" and "a", as published with the algorithm.
	for in, want := range map[string]string{"": "cbf29ce484222325", "a": "af63dc4c8601ec8c"} {
		if got := idempotency.KeyHash(in); got != want {
			t.Errorf("KeyHash(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestNewKeyUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := idempotency.NewKey()
		if seen[k] {
			t.Fatalf("NewKey repeated %q", k)
		}
		seen[k] = true
		if err := idempotency.ValidateKey(k); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	if _, err := idempotency.New(idempotency.WithResolver(nil)); err == nil || !strings.Contains(err.Error(), "WithResolver") {
		t.Errorf("New(WithResolver(nil)) = %v, want an error naming the option", err)
	}
	bad := map[string]idempotency.ServerOption{
		"WithResolver":           idempotency.WithResolver(nil),
		"WithClock":              idempotency.WithClock(nil),
		"WithStore":              idempotency.WithStore(nil),
		"WithIdentity":           idempotency.WithIdentity(nil),
		"WithTTL":                idempotency.WithTTL(0),
		"WithLease":              idempotency.WithLease(-1),
		"WithStoreTimeout":       idempotency.WithStoreTimeout(0),
		"WithStoredCodes":        idempotency.WithStoredCodes(policy.Codes(codes.NotFound)),
		"WithTypes":              idempotency.WithTypes(nil),
		"is longer than the TTL": idempotency.WithLease(48 * 3600e9),
	}
	for name, o := range bad {
		if _, err := idempotency.NewServer(o); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("NewServer(%s) = %v, want an error naming it", name, err)
		}
	}
	if _, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: -1}); err == nil {
		t.Error("NewMemoryStore(MaxEntries: -1) succeeded")
	}
	if _, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxBytes: -1}); err == nil {
		t.Error("NewMemoryStore(MaxBytes: -1) succeeded")
	}
	if err := idempotency.ValidateKey("ok"); err != nil || errors.Unwrap(err) != nil {
		t.Error(err)
	}
}

// An invalid policy fails the call with the resolver's *policy.Error, which
// errors.As finds and which is FAILED_PRECONDITION.
func TestPolicyErrorAsIs(t *testing.T) {
	const broken = "/failsoft.policytest.broken.v1.BrokenService/ZeroTimeout"
	cc := testserver.Dial(t, "passthrough:///policy")
	srv, err := idempotency.NewServer(idempotency.WithIdentity(func(context.Context) (string, error) { return "t", nil }))
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{
		"client": newClient(t).UnaryClientInterceptor()(context.Background(), broken, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, cc, noopInvoker),
	}
	_, errs["server unary"] = srv.UnaryServerInterceptor()(context.Background(), &policytestv1.PingRequest{}, &grpc.UnaryServerInfo{FullMethod: broken}, nil)
	errs["server stream"] = srv.StreamServerInterceptor()(nil, fakeStream{context.Background()}, &grpc.StreamServerInfo{FullMethod: broken}, nil)
	for name, err := range errs {
		var pe *policy.Error
		if !errors.As(err, &pe) || status.Code(err) != codes.FailedPrecondition {
			t.Errorf("%s: %v (%T), want a *policy.Error with FAILED_PRECONDITION", name, err, err)
		}
	}
}
