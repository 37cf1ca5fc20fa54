package retry

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that a
// StopError adds to the last attempt's status.
const ErrorDomain = "failsoft.retry"

// ErrorInfo reasons of a StopError.
const (
	// ReasonBudgetExhausted: the target's retry budget refused the retry.
	ReasonBudgetExhausted = "RETRY_BUDGET_EXHAUSTED"
	// ReasonDeadline: the next retry would not have had time to run before
	// the caller's deadline.
	ReasonDeadline = "RETRIES_CUT_SHORT_BY_DEADLINE"
	// ReasonReplayBuffer: a stream was not retried because the request
	// messages it sent outgrew its replay buffer (WithReplayBuffer).
	ReasonReplayBuffer = "RETRY_REPLAY_BUFFER_EXCEEDED"
)

// StopError is returned when the retry layer stops retrying a call that
// failed with a retryable status, for a reason of its own that the caller
// should see: the retry budget was exhausted (Reason "budget"), the
// deadline left no time for another attempt (Reason "deadline"), or a
// stream had sent more than its replay buffer holds (Reason "buffer").
//
// To the gRPC status functions it looks like the last attempt's error: the
// same code, the same message with the reason appended, and the same
// details followed by a google.rpc.ErrorInfo with domain ErrorDomain and
// reason ReasonBudgetExhausted or ReasonDeadline. Errors that end a call
// for any other reason (a non-retryable code, the attempts used up) are
// returned unchanged.
type StopError struct {
	// Reason is "budget", "deadline" or "buffer", as in observe's
	// RetryStopped event.
	Reason string
	// Attempts is the number of attempts sent.
	Attempts int
	// Target is the ClientConn target of the call.
	Target string
	// Err is the last attempt's error.
	Err error

	st *status.Status
}

func newStopError(reason string, attempts int, target string, last error, detail string) *StopError {
	e := &StopError{Reason: reason, Attempts: attempts, Target: target, Err: last}
	orig := status.Convert(last)
	info := &errdetails.ErrorInfo{
		Domain:   ErrorDomain,
		Metadata: map[string]string{"attempts": strconv.Itoa(attempts), "target": target},
	}
	var msg string
	switch reason {
	case "budget":
		info.Reason = ReasonBudgetExhausted
		msg = fmt.Sprintf("failsoft: retry: not retried, the retry budget for %s is exhausted after %s; last attempt: %s", target, plural(attempts), orig.Message())
	case "buffer":
		info.Reason = ReasonReplayBuffer
		msg = fmt.Sprintf("failsoft: retry: not retried, the stream sent more than its replay buffer of %s bytes holds; last attempt: %s", detail, orig.Message())
	default:
		info.Reason = ReasonDeadline
		msg = fmt.Sprintf("failsoft: retry: retries cut short by the deadline after %s (%s); last attempt: %s", plural(attempts), detail, orig.Message())
	}
	sp := proto.CloneOf(orig.Proto())
	sp.Message = msg
	if a, err := anypb.New(info); err == nil {
		sp.Details = append(sp.Details, a)
	}
	e.st = status.FromProto(sp)
	return e
}

func plural(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return strconv.Itoa(n) + " attempts"
}

func (e *StopError) Error() string {
	return "rpc error: code = " + e.st.Code().String() + " desc = " + e.st.Message()
}

// GRPCStatus returns the last attempt's status with the reason added, so
// that status.FromError, status.Code and grpc-go see it.
func (e *StopError) GRPCStatus() *status.Status { return e.st }

// Unwrap returns the last attempt's error.
func (e *StopError) Unwrap() error { return e.Err }

// Overloaded reports whether the last attempt's error carried a server's
// overload signal, so that outcome's classification sees through the
// StopError.
func (e *StopError) Overloaded() bool {
	var m interface{ Overloaded() bool }
	return errors.As(e.Err, &m) && m.Overloaded()
}
