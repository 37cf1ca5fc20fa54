package failsoft_test

import (
	"log"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft"
)

func ExampleWithLatePolicies() {
	// This program registers some of its services' descriptors after
	// start-up, so their policies are checked on each method's first
	// call: a call to a method whose policy is invalid fails with
	// FAILED_PRECONDITION. Without the option, DialOptions would refuse
	// invalid policies of the services linked so far, naming each.
	suite, err := failsoft.DialOptions(failsoft.WithLatePolicies())
	if err != nil {
		log.Fatal(err)
	}
	_ = suite // pass to grpc.NewClient

	// Output:
}

func ExampleWithServerLatePolicies() {
	serverOpts, err := failsoft.ServerOptions(failsoft.WithServerLatePolicies())
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(serverOpts...)
	defer srv.Stop()

	// Output:
}
