package outcome

import "google.golang.org/grpc/status"

// MarkOverloaded returns err marked as the answer of a live server that is
// shedding load, so that Classify sees Overload whatever its code. Layers
// that read a server's pushback (a grpc-retry-pushback-ms trailer, a
// google.rpc.RetryInfo detail) mark the attempt's error with it, so that
// the layers that only see the error, such as a circuit breaker or a
// throttle, tell an overloaded server from a broken one.
//
// The marked error looks like err to everything else: the same Error text,
// the same status to status.FromError, status.Code and grpc-go (the very
// *status.Status of err when err carries one), and errors.Is and errors.As
// reach err and its chain through Unwrap.
//
// MarkOverloaded returns nil for nil, err itself when it is already marked,
// and err unchanged when it is a Rejection or wraps one (unless err carries
// a status of its own, which is what Classify reads): a layer's local
// answer says nothing about the server, and a Rejection is always Ignored.
func MarkOverloaded(err error) error {
	switch e := err.(type) {
	case nil, *Rejection, *overloadedStatus, *overloadedError:
		return err
	case interface{ GRPCStatus() *status.Status }:
		// A status error, the common case: Classify reads its code without
		// unwrapping, and so does this.
		if st := e.GRPCStatus(); st != nil {
			return &overloadedStatus{overloadedError{err}, st}
		}
	}
	if _, ok := AsRejection(err); ok {
		return err
	}
	if st, ok := status.FromError(err); ok {
		return &overloadedStatus{overloadedError{err}, st}
	}
	return &overloadedError{err}
}

// overloadedError is an error marked as overload that carries no gRPC
// status, such as a context error: it has no GRPCStatus method, so that
// status.FromError and Code treat it exactly as they treat err.
type overloadedError struct{ err error }

func (e *overloadedError) Error() string    { return e.err.Error() }
func (e *overloadedError) Unwrap() error    { return e.err }
func (e *overloadedError) Overloaded() bool { return true }

// overloadedStatus is an error marked as overload that carries the gRPC
// status st of the error it marks.
type overloadedStatus struct {
	overloadedError
	st *status.Status
}

// GRPCStatus returns the status of the marked error.
func (e *overloadedStatus) GRPCStatus() *status.Status { return e.st }
