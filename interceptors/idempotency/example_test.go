package idempotency_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// The client interceptor goes outside the retry interceptor, so that all
// attempts of a call carry the same key.
func ExampleNew() {
	idem, err := idempotency.New()
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("dns:///payments.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(idem.UnaryClientInterceptor() /* , retries, breaker... */),
		grpc.WithChainStreamInterceptor(idem.StreamClientInterceptor()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	fmt.Println("ready")
	// Output: ready
}

// An operation with an identity of its own uses it as the key, so that
// even a call the application repeats after a restart is deduplicated.
func ExampleWithKey() {
	idem, _ := idempotency.New()
	send := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		fmt.Println(metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata))
		return nil
	}
	ctx := idempotency.WithKey(context.Background(), "order-2026-000042")
	_ = idem.UnaryClientInterceptor()(ctx, policytestv1.TunedService_KeyedWrite_FullMethodName, nil, nil, nil, send)

	err := idem.UnaryClientInterceptor()(idempotency.WithKey(context.Background(), "naïve"), policytestv1.TunedService_KeyedWrite_FullMethodName, nil, nil, nil, send)
	fmt.Println(err)
	// Output:
	// [order-2026-000042]
	// rpc error: code = InvalidArgument desc = failsoft: idempotency: key of /failsoft.policytest.v1.TunedService/KeyedWrite: idempotency key has a byte 0xc3 at offset 2 that is not printable ASCII
}

// The server interceptor deduplicates by caller, method and key. Here the
// caller is the tenant that an authentication layer put in the context.
func ExampleNewServer() {
	type tenantKey struct{}
	srv, err := idempotency.NewServer(
		idempotency.WithIdentity(func(ctx context.Context) (string, error) {
			t, ok := ctx.Value(tenantKey{}).(string)
			if !ok {
				return "", fmt.Errorf("no tenant")
			}
			return t, nil
		}),
		idempotency.WithTTL(48*time.Hour),
	)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer(
		grpc.ChainUnaryInterceptor( /* authentication, */ srv.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(srv.StreamServerInterceptor()),
	)
	defer s.Stop()
	fmt.Println("serving")
	// Output: serving
}

// A bounded store in memory: at most 10,000 keys in 16 MiB.
func ExampleNewMemoryStore() {
	st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 10_000, MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	_, err = idempotency.NewServer(idempotency.WithStore(st))
	fmt.Println(err)
	// Output: <nil>
}

func ExampleValidateKey() {
	for _, k := range []string{"order-42", "", " order-42"} {
		fmt.Printf("%q: %v\n", k, idempotency.ValidateKey(k))
	}
	// Output:
	// "order-42": <nil>
	// "": idempotency key is empty
	// " order-42": idempotency key starts or ends with a space
}

func ExampleNewKey() {
	k := idempotency.NewKey()
	fmt.Println(len(k), k[14:15], idempotency.ValidateKey(k))
	// Output: 36 4 <nil>
}

func ExampleFingerprintOf() {
	a, _ := idempotency.FingerprintOf("/pay.v1.Pay/Charge", &policytestv1.PingRequest{Payload: "12.50 EUR"})
	b, _ := idempotency.FingerprintOf("/pay.v1.Pay/Charge", &policytestv1.PingRequest{Payload: "12.50 EUR"})
	c, _ := idempotency.FingerprintOf("/pay.v1.Pay/Charge", &policytestv1.PingRequest{Payload: "125.0 EUR"})
	fmt.Println(a == b, a == c)
	// Output: true false
}

func ExampleKeyHash() {
	fmt.Println(idempotency.KeyHash("order-2026-000042"))
	// Output: 8ad27655de5f4ffd
}

// Only successes and final business errors are replayed; a store can be
// told to keep fewer.
func ExampleWithStoredCodes() {
	_, err := idempotency.NewServer(idempotency.WithStoredCodes(policy.Codes(codes.OK, codes.FailedPrecondition)))
	fmt.Println(err)
	// Output: <nil>
}

// Streaming handlers read the key and deduplicate themselves.
func ExampleIncomingKey() {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(policy.KeyMetadata, "upload-7"))
	fmt.Println(idempotency.IncomingKey(ctx))
	// Output: upload-7 <nil>
}

// By default the caller is the verified mTLS client certificate; a
// request without one is refused.
func ExampleCertificateIdentity() {
	_, err := idempotency.CertificateIdentity(context.Background())
	fmt.Println(status.Code(err))
	// Output: Unauthenticated
}

// A service that does not authenticate its callers says so: they all share
// one identity, and so one key space.
func ExampleUnauthenticated() {
	_, err := idempotency.NewServer(idempotency.WithIdentity(idempotency.Unauthenticated))
	fmt.Println(err)
	// Output: <nil>
}

// The address of the peer, an explicit and weak choice.
func ExamplePeerIdentity() {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4321}})
	fmt.Println(idempotency.PeerIdentity(ctx))
	// Output: ip:192.0.2.7 <nil>
}

// A client can tell that an answer came from the server's store.
func ExampleReplayed() {
	// In a client, grpc.Header(&header) fills the header of a call.
	header := metadata.Pairs(idempotency.ReplayedMetadata, "true")
	fmt.Println(idempotency.Replayed(header), idempotency.Replayed(nil))
	// Output: true false
}

// A handler marks the point after which its effect is done: a transient
// error after it is stored and replayed, not run again.
func ExampleCommit() {
	charge := func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		// ... write the charge to the ledger ...
		idempotency.Commit(ctx)
		// ... notify, which may time out: the charge stands either way ...
		return &policytestv1.PingResponse{Payload: "charged " + r.Payload}, nil
	}
	resp, _ := charge(context.Background(), &policytestv1.PingRequest{Payload: "42"})
	fmt.Println(resp.Payload)
	// Output: charged 42
}

// A recovery interceptor inside the idempotency interceptor reports
// panics with RecoveredPanic, so that the key is released, not stored as
// INTERNAL.
func ExampleRecoveredPanic() {
	err := idempotency.RecoveredPanic("nil map")
	fmt.Println(status.Code(err), err)
	// Output: Internal handler panicked: nil map
}

// What a store holds and has given up under load.
func ExampleMemoryStore_Stats() {
	st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 10_000, MaxEntriesPerIdentity: 1_000})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", st.Stats())
	// Output: {Entries:0 Bytes:0 Identities:0 Evictions:0 Refusals:0}
}

func ExampleWithMaxWaiters() {
	_, err := idempotency.NewServer(idempotency.WithIdentity(idempotency.Unauthenticated), idempotency.WithMaxWaiters(100))
	fmt.Println(err)
	// Output: <nil>
}
