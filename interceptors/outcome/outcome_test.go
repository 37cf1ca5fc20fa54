package outcome_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/outcome"
)

type pushback struct{ error }

func (pushback) Overloaded() bool { return true }

func TestClassify(t *testing.T) {
	rej := &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open"}
	tests := []struct {
		err  error
		want outcome.Class
	}{
		{nil, outcome.Success},
		{status.Error(codes.Unavailable, "x"), outcome.Failure},
		{status.Error(codes.Internal, "x"), outcome.Failure},
		{status.Error(codes.Unknown, "x"), outcome.Failure},
		{status.Error(codes.DeadlineExceeded, "x"), outcome.Failure},
		{status.Error(codes.ResourceExhausted, "x"), outcome.Overload},
		{status.Error(codes.InvalidArgument, "x"), outcome.Ignored},
		{status.Error(codes.NotFound, "x"), outcome.Ignored},
		{status.Error(codes.Canceled, "x"), outcome.Ignored},
		{status.Error(codes.FailedPrecondition, "x"), outcome.Ignored},
		{status.Error(codes.PermissionDenied, "x"), outcome.Ignored},
		{context.Canceled, outcome.Ignored},
		{context.DeadlineExceeded, outcome.Failure},
		{io.EOF, outcome.Failure},
		{rej, outcome.Ignored},
		{fmt.Errorf("wrapped: %w", rej), outcome.Ignored},
		{pushback{status.Error(codes.Unavailable, "busy")}, outcome.Overload},
	}
	for _, tc := range tests {
		if got := outcome.Default.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	c := outcome.Default.With(codes.ResourceExhausted, outcome.Failure)
	if got := c.Classify(status.Error(codes.ResourceExhausted, "x")); got != outcome.Failure {
		t.Errorf("changed classifier: %v", got)
	}
	if outcome.Default.Code(codes.ResourceExhausted) != outcome.Overload {
		t.Error("With must not change the original")
	}
}

func TestRejection(t *testing.T) {
	cause := errors.New("five failures")
	var err error = &outcome.Rejection{Layer: "breaker", Target: "dns:///pay", Code: codes.Unavailable, Message: "circuit open for dns:///pay", Cause: cause}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("status.Code = %v", status.Code(err))
	}
	if s, _ := status.FromError(err); s.Message() != "circuit open for dns:///pay" {
		t.Fatalf("message %q", s.Message())
	}
	if !errors.Is(err, cause) {
		t.Fatal("cause lost")
	}
	if r, ok := outcome.AsRejection(fmt.Errorf("x: %w", err)); !ok || r.Layer != "breaker" {
		t.Fatal("AsRejection failed")
	}
	if _, ok := outcome.AsRejection(status.Error(codes.Unavailable, "x")); ok {
		t.Fatal("a plain status is not a rejection")
	}
}

func BenchmarkClassifyStatus(b *testing.B) {
	err := status.Error(codes.Unavailable, "x")
	b.ReportAllocs()
	for b.Loop() {
		outcome.Default.Classify(err)
	}
}
