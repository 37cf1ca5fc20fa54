package failsoft_test

import (
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/deadline"
)

func ExampleDialOptions() {
	suite, err := failsoft.DialOptions(
		// Calls without a deadline of their own get 5 s.
		failsoft.WithDeadline(deadline.WithDefaultTimeout(5e9)),
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
