package bulkhead_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft/interceptors/bulkhead"
)

func ExampleNew() {
	// At most 20 calls in flight per target, waiting up to 50 ms for a slot;
	// the notifications service gets only 5.
	b, err := bulkhead.New(bulkhead.Limit(20), bulkhead.MaxWait(50*time.Millisecond),
		bulkhead.TargetLimit("dns:///notifications:443", 5))
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("dns:///notifications:443", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(b.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(b.StreamClientInterceptor()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	fmt.Println(cc.Target())
	// Output: dns:///notifications:443
}

func ExampleInterceptor_UnaryClientInterceptor() {
	b, _ := bulkhead.New(bulkhead.Limit(1))
	unary := b.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///notifications:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	// A call that is still running when a second one arrives.
	_ = unary(context.Background(), "/n.v1.Notify/Send", nil, nil, cc,
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			err := unary(ctx, method, req, reply, cc, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
			fmt.Println(err)
			return nil
		})
	// Output: rpc error: code = ResourceExhausted desc = failsoft: bulkhead: dns:///notifications:443 is full: 1 calls in flight
}

func ExampleInterceptor_StreamClientInterceptor() {
	b, _ := bulkhead.New(bulkhead.PerMethod(), bulkhead.MethodLimit("/feed.v1.Feed/Watch", 10))
	// A stream holds its slot until it ends or its context is done.
	_ = grpc.WithChainStreamInterceptor(b.StreamClientInterceptor())
}

func ExampleInterceptor_Usages() {
	b, _ := bulkhead.New(bulkhead.Limit(8))
	unary := b.UnaryClientInterceptor()
	cc, _ := grpc.NewClient("dns:///search:443", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	_ = unary(context.Background(), "/s.v1.Search/Query", nil, nil, cc,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			for _, u := range b.Usages() {
				fmt.Println(u.Target, u.InFlight, u.Limit)
			}
			return nil
		})
	// Output: dns:///search:443 1 8
}

func ExampleWithMaxTargets() {
	// Keep about 10,000 compartments, for a client of many backends.
	_, err := bulkhead.New(bulkhead.WithMaxTargets(10_000))
	fmt.Println(err)
	// Output: <nil>
}
