package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	serverpb "github.com/failsoft/failsoft/interceptors/internal/pushback"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// TestMarkPushback: an error with server pushback becomes overload that
// keeps the attempt's status and message and carries the pushback, read
// once; a layer's rejection and an error without pushback stay as they
// are.
func TestMarkPushback(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "busy")
	st, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	retryInfo := st.Err()
	rejection := &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open"}
	pushbackMD := func(v string) metadata.MD { return metadata.Pairs(PushbackMetadata, v) }
	tests := []struct {
		name    string
		trailer metadata.MD
		err     error
		want    serverpb.Pushback // the carried pushback; zero: err returned unchanged
	}{
		{"trailer", pushbackMD("20"), unavailable, serverpb.Pushback{Present: true, Allow: true, Delay: 20 * time.Millisecond}},
		{"malformed trailer", pushbackMD("soon"), unavailable, serverpb.Pushback{Present: true}},
		{"retry info", nil, retryInfo, serverpb.Pushback{Present: true, Allow: true, Delay: 3 * time.Second}},
		{"trailer wins over retry info", pushbackMD("7"), retryInfo, serverpb.Pushback{Present: true, Allow: true, Delay: 7 * time.Millisecond}},
		{"wrapped status", pushbackMD("0"), fmt.Errorf("attempt: %w", unavailable), serverpb.Pushback{Present: true, Allow: true}},
		{"no status", pushbackMD("0"), context.DeadlineExceeded, serverpb.Pushback{Present: true, Allow: true}},
		{"already overload", pushbackMD("5"), outcome.MarkOverloaded(unavailable), serverpb.Pushback{Present: true, Allow: true, Delay: 5 * time.Millisecond}},
		{"no pushback", metadata.Pairs("other", "1"), unavailable, serverpb.Pushback{}},
		{"rejection", pushbackMD("0"), rejection, serverpb.Pushback{}},
		{"wrapped rejection", pushbackMD("0"), fmt.Errorf("layer: %w", rejection), serverpb.Pushback{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := markPushback(tt.trailer, tt.err)
			if tt.want == (serverpb.Pushback{}) {
				if got != tt.err {
					t.Fatalf("markPushback = %#v, want the error unchanged", got)
				}
				return
			}
			if got == tt.err {
				t.Fatal("error not marked")
			}
			if c := outcome.Default.Classify(got); c != outcome.Overload {
				t.Errorf("classified %v, want Overload", c)
			}
			if got.Error() != tt.err.Error() || !errors.Is(got, tt.err) {
				t.Errorf("marked %q does not keep %q", got, tt.err)
			}
			gotSt, gotOK := status.FromError(got)
			wantSt, wantOK := status.FromError(tt.err)
			if gotOK != wantOK || gotSt.Code() != wantSt.Code() || gotSt.Message() != wantSt.Message() || len(gotSt.Details()) != len(wantSt.Details()) {
				t.Errorf("status %v (%v), want %v (%v)", gotSt, gotOK, wantSt, wantOK)
			}
			// The retry layer reads the pushback from the error alone, and
			// marking again keeps the first reading.
			if pb := serverPushback(nil, got); pb != tt.want {
				t.Errorf("carried pushback %+v, want %+v", pb, tt.want)
			}
			if again := markPushback(pushbackMD("-1"), got); again != got {
				t.Errorf("marked twice: %#v", again)
			}
			wrapped := fmt.Errorf("outer: %w", got)
			if pb := serverPushback(nil, wrapped); pb != tt.want {
				t.Errorf("through a wrapper: pushback %+v, want %+v", pb, tt.want)
			}
		})
	}
}
