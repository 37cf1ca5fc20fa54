package retry

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/internal/chain"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// recordMayRetry is a layer inside the retry layer that records
// chain.State.MayRetry on every attempt.
type recordMayRetry struct{ seen *[]bool }

func (r recordMayRetry) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	*r.seen = append(*r.seen, next.MayRetry)
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

// setDeadline is a layer outside the retry layer that writes the call's
// deadline into State, as the deadline layer does.
type setDeadline struct{ at time.Time }

func (s setDeadline) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	next.Deadline = s.at
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

// TestMayRetry: the retry layer tells the layers inside it, on every
// attempt, whether a retryable failure of that attempt would be retried:
// not on the last attempt, not when the budget has no token, not when the
// deadline leaves no room, and never for a method that is not retried.
func TestMayRetry(t *testing.T) {
	fake := clock.NewFake(time.Now())
	for _, tc := range []struct {
		name     string
		opts     []Option
		method   string
		deadline time.Time
		want     []bool
	}{
		{"without budget", []Option{WithoutBudget()}, pb.PlainService_Idempotent_FullMethodName, time.Time{}, []bool{true, true, false}},
		{"with the default budget", nil, pb.PlainService_Idempotent_FullMethodName, time.Time{}, []bool{true, true, false}},
		{"budget without tokens", []Option{WithBudget(Budget{Ratio: 0.01, TTL: time.Second})}, pb.PlainService_Idempotent_FullMethodName, time.Time{}, []bool{false}},
		// The floor holds one token: the first retry spends it, so the
		// second attempt's failure would not be retried.
		{"budget with one token", []Option{WithBudget(Budget{Ratio: 0.01, MinPerSecond: 1, TTL: time.Second})}, pb.PlainService_Idempotent_FullMethodName, time.Time{}, []bool{true, false}},
		{"deadline reached", []Option{WithoutBudget()}, pb.PlainService_Idempotent_FullMethodName, fake.Now(), []bool{false}},
		{"deadline ahead", []Option{WithoutBudget()}, pb.PlainService_Idempotent_FullMethodName, fake.Now().Add(time.Minute), []bool{true, true, false}},
		{"not retryable", nil, pb.PlainService_Plain_FullMethodName, time.Time{}, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic, err := New(append([]Option{WithClock(fake), WithRand(func() float64 { return 0 })}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			var seen []bool
			fail := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				return status.Error(codes.Unavailable, "down")
			}
			layers := []chain.Unary{layer{ic}, recordMayRetry{&seen}}
			if !tc.deadline.IsZero() {
				layers = append([]chain.Unary{setDeadline{tc.deadline}}, layers...)
			}
			_ = chain.NewUnaries(layers...).Start(fail).Invoke(context.Background(), tc.method, &pb.PingRequest{}, &pb.PingResponse{}, nil)
			if !slices.Equal(seen, tc.want) {
				t.Errorf("MayRetry by attempt = %v, want %v", seen, tc.want)
			}
		})
	}
}
