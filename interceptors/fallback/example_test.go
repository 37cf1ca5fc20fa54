package fallback_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/fallback"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// down is an invoker standing in for a server that is unreachable.
func down(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
	return status.Error(codes.Unavailable, "connection refused")
}

func ExampleNew() {
	const method = "/failsoft.policytest.v1.PlainService/NoSideEffects"
	fb, err := fallback.New(
		// Plan B: ask a replica, here a function.
		fallback.WithFunc(method, fallback.Typed(func(ctx context.Context, req *pb.PingRequest, cause error) (*pb.PingResponse, error) {
			return nil, cause // the replica is down too
		})),
		// Plan C: the last good answer to the same request.
		fallback.WithCache(method),
		fallback.CacheLimits(500, time.Minute),
		// Plan D: a static default.
		fallback.WithStatic(method, &pb.PingResponse{Payload: "try again later"}),
	)
	if err != nil {
		log.Fatal(err)
	}
	br, _ := breaker.New()
	// Fallback goes outside the breaker (and outside retry).
	cc, err := grpc.NewClient("dns:///catalog:443", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(fb.UnaryClientInterceptor(), br.UnaryClientInterceptor()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	fmt.Println(cc.Target())
	// Output: dns:///catalog:443
}

func ExampleInterceptor_UnaryClientInterceptor() {
	const method = "/failsoft.policytest.v1.PlainService/NoSideEffects"
	fb, _ := fallback.New(fallback.WithStatic(method, &pb.PingResponse{Payload: "default"}))
	unary := fb.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///catalog:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()

	var header metadata.MD
	var level fallback.Level
	reply := &pb.PingResponse{}
	err := unary(context.Background(), method, &pb.PingRequest{}, reply, cc, down, grpc.Header(&header), fallback.Report(&level))
	fmt.Println(err, reply.GetPayload(), level, fallback.FromHeader(header))
	// Output: <nil> default static static
}

func ExampleInterceptor_StreamClientInterceptor() {
	fb, _ := fallback.New()
	// Streams pass through; chaining it keeps the chains symmetrical.
	_ = grpc.WithChainStreamInterceptor(fb.StreamClientInterceptor())
}

func ExampleWithCache() {
	// Only methods without side effects may be answered from a cache.
	_, err := fallback.New(fallback.WithCache("/failsoft.policytest.v1.PlainService/Plain"))
	fmt.Println(err)
	// Output: fallback.WithCache("/failsoft.policytest.v1.PlainService/Plain"): the method is UNKNOWN; only NO_SIDE_EFFECTS methods may be answered from a cache
}
