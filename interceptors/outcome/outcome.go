package outcome

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Class says what a call's result means for the health of its target.
type Class uint8

const (
	// Success: the target answered as designed.
	Success Class = iota
	// Ignored: the outcome says nothing about the target's health; the
	// caller caused it (bad argument, not found, cancelled) or a failsoft
	// layer answered locally.
	Ignored
	// Overload: the target is alive but shedding load. Feeds throttling and
	// the retry budget; by default it does not open a circuit breaker.
	Overload
	// Failure: the target failed the call: it is broken or unreachable,
	// or, when it still serves other calls, overloaded without saying so.
	// Feeds the breaker's trip rules, which open only when the target
	// serves almost nothing, and the throttle while the target still
	// answers.
	Failure
)

func (c Class) String() string {
	switch c {
	case Success:
		return "success"
	case Ignored:
		return "ignored"
	case Overload:
		return "overload"
	case Failure:
		return "failure"
	}
	return fmt.Sprintf("Class(%d)", uint8(c))
}

// Classifier maps a status code to a Class. The zero value is not useful:
// start from Default and change entries.
type Classifier [17]Class

// Default is the documented classification:
//
//	OK                                          Success
//	UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS,
//	DEADLINE_EXCEEDED                           Failure
//	RESOURCE_EXHAUSTED                          Overload
//	everything else (CANCELLED, INVALID_ARGUMENT,
//	NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
//	UNAUTHENTICATED, FAILED_PRECONDITION, ABORTED,
//	OUT_OF_RANGE, UNIMPLEMENTED)                Ignored
//
// An error that carries server pushback (see MarkOverloaded) is Overload
// whatever its code, and a Rejection is always Ignored.
var Default = func() Classifier {
	var c Classifier
	for i := range c {
		c[i] = Ignored
	}
	c[codes.OK] = Success
	for _, f := range []codes.Code{codes.Unavailable, codes.Internal, codes.Unknown, codes.DataLoss, codes.DeadlineExceeded} {
		c[f] = Failure
	}
	c[codes.ResourceExhausted] = Overload
	return c
}()

// With returns a copy of c in which code is classified as class.
func (c Classifier) With(code codes.Code, class Class) Classifier {
	if int(code) < len(c) {
		c[code] = class
	}
	return c
}

// Code classifies a status code.
func (c *Classifier) Code(code codes.Code) Class {
	if int(code) < len(c) {
		return c[code]
	}
	return Ignored
}

// Classify classifies an error returned by an invoker or a stream. It does
// not allocate for nil errors or for errors that are gRPC statuses. An
// error whose chain holds one with an Overloaded() bool method that
// returns true is Overload, whatever its code: MarkOverloaded's errors,
// and those of layers that mark pushback with more to carry (the retry
// package's pushback marking).
func (c *Classifier) Classify(err error) Class {
	switch e := err.(type) {
	case nil:
		return Success
	case *Rejection:
		return Ignored
	case overloadMarker:
		if e.Overloaded() {
			return Overload
		}
	case interface{ GRPCStatus() *status.Status }:
		// A plain status, the common case: no unwrapping needed.
		return c.Code(e.GRPCStatus().Code())
	}
	if _, ok := AsRejection(err); ok {
		return Ignored
	}
	if overloaded(err) {
		return Overload
	}
	return c.Code(Code(err))
}

// Code returns the gRPC code of err, mapping context errors the way grpc-go
// does: context.Canceled is CANCELLED, context.DeadlineExceeded is
// DEADLINE_EXCEEDED, and any other non-status error is UNKNOWN.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return s.GRPCStatus().Code()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}

// overloadMarker is implemented by errors that carry a server's pushback.
type overloadMarker interface{ Overloaded() bool }

func overloaded(err error) bool {
	var m overloadMarker
	return errors.As(err, &m) && m.Overloaded()
}

// Rejection is the error a failsoft layer returns when it answers a call
// itself, without sending it: an open breaker, a full bulkhead, a
// self-throttling client, an exhausted retry budget, too little deadline
// left. Match it with errors.As; status.FromError sees its Code and message.
type Rejection struct {
	// Layer names the layer that rejected: "breaker", "bulkhead",
	// "throttle", "budget", "deadline".
	Layer string
	// Target is the ClientConn target the call was for.
	Target string
	// Code is the status code the caller sees.
	Code codes.Code
	// Message explains the rejection to a human.
	Message string
	// RetryAfter, when positive, says when the layer expects to accept
	// calls again (for example when an open breaker will probe).
	RetryAfter time.Duration
	// Cause is the error that led to the rejection, if any.
	Cause error
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", r.Code, r.Message)
}

// GRPCStatus lets status.FromError and status.Code see the rejection.
func (r *Rejection) GRPCStatus() *status.Status { return status.New(r.Code, r.Message) }

// Unwrap returns the cause.
func (r *Rejection) Unwrap() error { return r.Cause }

// AsRejection returns the Rejection in err's chain, if any.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	if errors.As(err, &r) {
		return r, true
	}
	return nil, false
}
