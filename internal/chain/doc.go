// Package chain folds failsoft's client layers into one gRPC interceptor.
//
// grpc-go chains interceptors by wrapping each one's successor in a new
// closure on every call: a suite of ten layers paid ten allocations per
// call for that alone. Here a layer gets its successor as a Next value,
// passed by value and never allocated, holding the layers still to run,
// grpc-go's own invoker (or streamer) at the end, and State: what outer
// layers learned about the call that inner ones need (the resolved
// policy, a deadline not yet set on the context, the attempt).
//
// Each layer package implements its layer once, in this form, and its
// public interceptor runs it with FinalUnary or FinalStream: with nothing
// after it but grpc-go's chain. The failsoft package runs all of them with
// NewUnaries and NewStreams. Layer packages register their layers with
// Register, so that the failsoft package reaches them without their types
// exporting this package's types. A unary layer that reads no State and
// must be innermost (pushback marking) runs as a plain interceptor around
// grpc-go's invoker (Unaries.Inside), which saves a hop.
//
// The suite marks every call's options with Mark, so that a second suite
// on the same connection is found. Calls that carry no options of their
// own get shared, unchanging slices, which Bare recognises: layers skip
// scanning those for their call options, and may keep what they built
// from them.
package chain
