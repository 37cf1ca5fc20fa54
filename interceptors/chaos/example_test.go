package chaos_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/chaos"
)

// A payment server for a game day: the injector starts off, and the rules
// are switched on when the drill begins.
func ExampleNew() {
	inj, err := chaos.New(chaos.WithSeed(42)) // the same seed replays the same drill
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(inj.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(inj.StreamServerInterceptor()),
	)
	defer srv.Stop()
	fmt.Println(inj.Config())
	// Output: off
}

func ExampleInjector_Set() {
	inj, err := chaos.New(chaos.WithSeed(1))
	if err != nil {
		log.Fatal(err)
	}
	err = inj.Set(chaos.Config{Enabled: true, Rules: []chaos.Rule{
		// Charges commit, but a fifth of the answers never arrive.
		{Match: "/payments.v1.PaymentService/Charge", Faults: chaos.Faults{LostRate: 0.2}},
		// The rest of the service is flaky and slow in its tail.
		{Match: "/payments.v1.PaymentService/*", Faults: chaos.Faults{
			ErrorRate: 0.05, ErrorCodes: []codes.Code{codes.Unavailable},
			Latency: 5 * time.Millisecond, SlowLatency: 300 * time.Millisecond, SlowFraction: 0.01,
		}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(inj.Config())
	// Output: /payments.v1.PaymentService/Charge: lost responses 20%; /payments.v1.PaymentService/*: errors 5% UNAVAILABLE, latency 5ms, 1% slowed by 300ms
}

// On the client, the injector goes after failsoft's suite, so that every
// attempt meets its own faults.
func ExampleInjector_UnaryClientInterceptor() {
	inj, err := chaos.New(chaos.WithConfig(chaos.Config{Enabled: true, Rules: []chaos.Rule{
		{Match: "*", Faults: chaos.Faults{ErrorRate: 1}},
	}}))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(inj.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(inj.StreamClientInterceptor()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(context.Background(), "/p.Svc/Method", nil, nil)
	fmt.Println(status.Code(err), chaos.IsInjected(err))
	// Output: Unavailable true
}

// The control endpoint on loopback, where only local peers reach it.
func ExampleInjector_Handler() {
	inj, err := chaos.New()
	if err != nil {
		log.Fatal(err)
	}
	h, err := inj.Handler() // chaos.WithSecret(s) to allow remote operators who send it
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	// curl -d '{"enabled": true, "rules": [{"match": "*", "down": true}]}' http://ADDR/
	fmt.Println("control listening on loopback")
	// Output: control listening on loopback
}

func ExampleParseConfig() {
	cfg, err := chaos.ParseConfig([]byte(`{"enabled": true, "rules": [
		{"match": "/payments.v1.PaymentService/*", "outage_every": "1m", "outage_for": "10s"}]}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg)
	_, err = chaos.ParseConfig([]byte(`{"enabled": true, "rules": [{"match": "*", "error_rate": 2}]}`))
	fmt.Println(err)
	// Output:
	// /payments.v1.PaymentService/*: down 10s every 1m0s
	// rule 0 (*): failsoft: chaos: error_rate 2 is outside [0, 1]
}

func ExampleIsInjected() {
	drill := status.Error(codes.Unavailable, chaos.MessagePrefix+"service is down (injected outage)")
	incident := status.Error(codes.Unavailable, "connection refused")
	fmt.Println(chaos.IsInjected(drill), chaos.IsInjected(incident))
	// Output: true false
}
