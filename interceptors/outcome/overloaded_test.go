package outcome_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/outcome"
)

func TestMarkOverloaded(t *testing.T) {
	withDetails, err := status.New(codes.Unavailable, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code // status.Code and outcome.Code of the marked error
	}{
		{"status", status.Error(codes.Unavailable, "busy"), codes.Unavailable},
		{"status with details", withDetails.Err(), codes.Unavailable},
		{"internal", status.Error(codes.Internal, "x"), codes.Internal},
		{"wrapped status", fmt.Errorf("dialing: %w", status.Error(codes.Unavailable, "busy")), codes.Unavailable},
		{"context deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"context canceled", context.Canceled, codes.Canceled},
		{"plain error", io.ErrUnexpectedEOF, codes.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := outcome.MarkOverloaded(tc.err)
			if got := outcome.Default.Classify(m); got != outcome.Overload {
				t.Errorf("Classify = %v, want overload", got)
			}
			if m.Error() != tc.err.Error() {
				t.Errorf("Error() = %q, want %q", m.Error(), tc.err.Error())
			}
			if got := outcome.Code(m); got != tc.code {
				t.Errorf("outcome.Code = %v, want %v", got, tc.code)
			}
			if got, want := status.Code(m), status.Code(tc.err); got != want {
				t.Errorf("status.Code = %v, want %v as for the unmarked error", got, want)
			}
			got, gotOK := status.FromError(m)
			want, wantOK := status.FromError(tc.err)
			if gotOK != wantOK || got.Code() != want.Code() || got.Message() != want.Message() || len(got.Details()) != len(want.Details()) {
				t.Errorf("status.FromError = %v, %v; want %v, %v", got, gotOK, want, wantOK)
			}
			if !errors.Is(m, tc.err) {
				t.Errorf("errors.Is(marked, err) = false")
			}
			if errors.Unwrap(m) != tc.err {
				t.Errorf("Unwrap = %v, want the marked error", errors.Unwrap(m))
			}
			if again := outcome.MarkOverloaded(m); again != m {
				t.Errorf("marking twice wrapped again")
			}
		})
	}
}

func TestMarkOverloadedKeepsStatus(t *testing.T) {
	err := status.Error(codes.Unavailable, "busy")
	m := outcome.MarkOverloaded(err)
	// The very status: nothing copied, nothing allocated to read it.
	if status.Convert(m) != status.Convert(err) {
		t.Errorf("status.Convert(marked) is not the status of the marked error")
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(m, &se) || se.GRPCStatus().Code() != codes.Unavailable {
		t.Errorf("errors.As to GRPCStatus failed")
	}
	// errors.Is with an equal status, as grpc-go's status errors allow.
	if !errors.Is(m, status.Error(codes.Unavailable, "busy")) {
		t.Errorf("errors.Is(marked, equal status) = false")
	}
	if errors.Is(m, status.Error(codes.Unavailable, "other")) {
		t.Errorf("errors.Is(marked, different status) = true")
	}
	// errors.As reaches a typed error in the chain.
	type myErr struct{ error }
	inner := &myErr{status.Error(codes.Unavailable, "typed")}
	var got *myErr
	if !errors.As(outcome.MarkOverloaded(inner), &got) || got != inner {
		t.Errorf("errors.As through the mark did not find the typed error")
	}
	// Without the mark the status is a failure.
	if outcome.Default.Classify(err) != outcome.Failure {
		t.Errorf("unmarked UNAVAILABLE is not a failure")
	}
	// A marked error wrapped again stays overload.
	if c := outcome.Default.Classify(fmt.Errorf("call: %w", m)); c != outcome.Overload {
		t.Errorf("wrapped marked error: Classify = %v, want overload", c)
	}
}

func TestMarkOverloadedLeavesNilAndRejections(t *testing.T) {
	if outcome.MarkOverloaded(nil) != nil {
		t.Errorf("MarkOverloaded(nil) != nil")
	}
	rej := &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open"}
	if got := outcome.MarkOverloaded(rej); got != error(rej) {
		t.Errorf("MarkOverloaded(rejection) = %v, want the rejection unchanged", got)
	}
	wrapped := fmt.Errorf("x: %w", rej)
	if got := outcome.MarkOverloaded(wrapped); got != wrapped {
		t.Errorf("MarkOverloaded(wrapped rejection) = %v, want it unchanged", got)
	}
	if outcome.Default.Classify(outcome.MarkOverloaded(rej)) != outcome.Ignored {
		t.Errorf("a rejection is always ignored")
	}
}

func TestClassifyMarkedDoesNotAllocate(t *testing.T) {
	m := outcome.MarkOverloaded(status.Error(codes.Unavailable, "busy"))
	if n := testing.AllocsPerRun(100, func() {
		if outcome.Default.Classify(m) != outcome.Overload {
			t.Fatal("not overload")
		}
		_ = outcome.Code(m)
	}); n != 0 {
		t.Errorf("Classify of a marked error: %v allocs, want 0", n)
	}
}

func ExampleMarkOverloaded() {
	// A server shed the call with UNAVAILABLE and a pushback: a live
	// server, overloaded, not a broken one.
	err := outcome.MarkOverloaded(status.Error(codes.Unavailable, "shedding load"))
	fmt.Println(status.Code(err), outcome.Default.Classify(err))
	fmt.Println(err)
	// Output:
	// Unavailable overload
	// rpc error: code = Unavailable desc = shedding load
}
