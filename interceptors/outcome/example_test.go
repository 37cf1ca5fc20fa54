package outcome_test

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/outcome"
)

// Every layer reads a call's result the same way: a broken target, an
// overloaded one, or a caller's mistake that says nothing about the target.
func ExampleClassifier_Classify() {
	c := outcome.Default
	for _, err := range []error{
		nil,
		status.Error(codes.Unavailable, "connection refused"),
		status.Error(codes.ResourceExhausted, "too many requests"),
		outcome.MarkOverloaded(status.Error(codes.Unavailable, "shedding load")),
		status.Error(codes.InvalidArgument, "bad amount"),
	} {
		fmt.Printf("%-18s %v\n", outcome.Code(err), c.Classify(err))
	}
	// Output:
	// OK                 success
	// Unavailable        failure
	// ResourceExhausted  overload
	// Unavailable        overload
	// InvalidArgument    ignored
}

// A layer that answers a call without sending it returns a Rejection,
// which still reads as a gRPC status.
func ExampleAsRejection() {
	var err error = &outcome.Rejection{Layer: "breaker", Target: "payments:443", Code: codes.Unavailable, Message: "circuit open"}
	if r, ok := outcome.AsRejection(err); ok {
		fmt.Println(r.Layer, status.Code(err))
	}
	// Output: breaker Unavailable
}
