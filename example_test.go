package failsoft_test

import (
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/idempotency"
)

func ExampleDialOptions() {
	suite, err := failsoft.DialOptions(
		// Calls without a deadline of their own get 5 s.
		failsoft.WithDeadline(deadline.WithDefaultTimeout(5 * time.Second)),
	)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("dns:///payments.internal:443",
		append(suite, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// Generated clients built on conn now get the whole suite.

	// Output:
}

func ExampleServerOptions() {
	serverOpts, err := failsoft.ServerOptions(
		// Calls this service makes downstream give up 50 ms before its
		// own caller does.
		failsoft.WithServerDeadline(deadline.WithSafetyMargin(50*time.Millisecond)),
		// Callers of this service are not authenticated, so deduplication
		// treats them as one; with mTLS, leave the default (the client
		// certificate), or name callers with idempotency.WithIdentity.
		failsoft.WithServerIdempotency(idempotency.WithIdentity(idempotency.Unauthenticated)),
	)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(serverOpts...)
	defer srv.Stop()
	// Register services on srv; methods whose proto requires an idempotency
	// key are now deduplicated by it.

	// Output:
}

func ExampleWithLoadBalancing() {
	// Each client keeps one backend, picked at random, instead of
	// round_robin, the suite's default.
	suite, err := failsoft.DialOptions(failsoft.WithLoadBalancing(`[{"pick_first":{"shuffleAddressList":true}}]`))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("dns:///payments.internal:443",
		append(suite, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	_, err = failsoft.DialOptions(failsoft.WithLoadBalancing(`round_robin`))
	fmt.Println(err)
	// Output:
	// failsoft.WithLoadBalancing("round_robin"): want a JSON list of one-key objects such as [{"round_robin":{}}]
}
