package pending

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/outcome"
)

// ErrorInfo names the google.rpc.ErrorInfo detail of a Deferred status:
// Reason ReasonPending in Domain Domain.
const (
	Domain        = "failsoft.pending"
	ReasonPending = "PENDING"
)

// Deferred is the error of a call that could not be sent now and was
// queued instead: it will be sent again with the same idempotency key until
// it settles or dies (see OnSettled and OnDead). It is not a failure of the
// operation; show it as "pending". Find it with errors.As.
//
// As a gRPC status (for callers that only see the status, such as a
// client of your own service) it is UNAVAILABLE with a google.rpc.ErrorInfo
// detail of reason PENDING in domain failsoft.pending; see IsPending.
type Deferred struct {
	// Key is the idempotency key the call was queued under.
	Key string
	// Method is the call's full method.
	Method string
	// Cause is why it could not be sent now.
	Cause error
}

func (d *Deferred) Error() string {
	return fmt.Sprintf("failsoft: pending: %s queued for later delivery: %v", d.Method, d.Cause)
}

// Unwrap returns the cause.
func (d *Deferred) Unwrap() error { return d.Cause }

// GRPCStatus returns UNAVAILABLE with the ErrorInfo detail.
func (d *Deferred) GRPCStatus() *status.Status {
	st := status.New(codes.Unavailable, d.Error())
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonPending, Domain: Domain,
		Metadata: map[string]string{"method": d.Method}}); err == nil {
		return ds
	}
	return st
}

// IsPending reports whether st says its call was queued for later delivery,
// for callers that see only the status of a Deferred.
func IsPending(st *status.Status) bool {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.Domain == Domain && ei.Reason == ReasonPending {
			return true
		}
	}
	return false
}

// NotQueuedError is the error of a call that could not be sent now and
// could not be queued either (the store was full or failed): the call
// failed, and nothing will send it again. errors.Is(err, ErrFull) tells a
// full store.
type NotQueuedError struct {
	Method string
	// Cause is why the call could not be sent.
	Cause error
	// Err is why it could not be queued.
	Err error
}

func (e *NotQueuedError) Error() string {
	return fmt.Sprintf("failsoft: pending: %s could not be queued (%v) after: %v", e.Method, e.Err, e.Cause)
}

// Unwrap returns the store's error and the call's.
func (e *NotQueuedError) Unwrap() []error { return []error{e.Err, e.Cause} }

// GRPCStatus returns the cause's code with this error's message.
func (e *NotQueuedError) GRPCStatus() *status.Status {
	return status.New(outcome.Code(e.Cause), e.Error())
}
