package pushback_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/internal/pushback"
)

var (
	none   = pushback.Pushback{}
	refuse = pushback.Pushback{Present: true}
	after  = func(d time.Duration) pushback.Pushback {
		return pushback.Pushback{Present: true, Allow: true, Delay: d}
	}
	retryIn  = func(d *durationpb.Duration) *errdetails.RetryInfo { return &errdetails.RetryInfo{RetryDelay: d} }
	duration = durationpb.New
)

func TestTrailer(t *testing.T) {
	tests := []struct {
		in   []string
		want pushback.Pushback
	}{
		{nil, none},
		{[]string{"0"}, after(0)},
		{[]string{"1500"}, after(1500 * time.Millisecond)},
		{[]string{"0010"}, after(10 * time.Millisecond)},
		{[]string{"2147483647"}, after(pushback.Max)},
		{[]string{"2147483648"}, refuse},
		{[]string{"-1"}, refuse},
		{[]string{"+5"}, refuse},
		{[]string{" 5"}, refuse},
		{[]string{""}, refuse},
		{[]string{"1e3"}, refuse},
		{[]string{"99999999999999999999"}, refuse},
		{[]string{"5", "5"}, refuse},
	}
	for _, tt := range tests {
		if got := pushback.Trailer(tt.in); got != tt.want {
			t.Errorf("Trailer(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// withDetails is an UNAVAILABLE status carrying details.
func withDetails(details ...proto.Message) *status.Status {
	sp := &spb.Status{Code: int32(codes.Unavailable), Message: "x"}
	for _, d := range details {
		a, err := anypb.New(d)
		if err != nil {
			panic(err)
		}
		sp.Details = append(sp.Details, a)
	}
	return status.FromProto(sp)
}

// withRaw is an UNAVAILABLE status carrying one detail as it came.
func withRaw(typeURL string, value []byte) *status.Status {
	return status.FromProto(&spb.Status{Code: int32(codes.Unavailable), Details: []*anypb.Any{{TypeUrl: typeURL, Value: value}}})
}

func TestRetryInfo(t *testing.T) {
	valid, err := proto.Marshal(retryIn(duration(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		st   *status.Status
		want pushback.Pushback
	}{
		{"nil status", nil, none},
		{"no details", withDetails(), none},
		{"other detail", withDetails(&errdetails.ErrorInfo{Reason: "x"}), none},
		{"valid", withDetails(retryIn(duration(2 * time.Second))), after(2 * time.Second)},
		{"zero", withDetails(retryIn(duration(0))), after(0)},
		{"at the bound", withDetails(retryIn(duration(pushback.Max))), after(pushback.Max)},
		{"no delay says nothing", withDetails(retryIn(nil)), none},
		{"no delay, then a delay", withDetails(retryIn(nil), retryIn(duration(time.Second))), after(time.Second)},
		{"after another detail", withDetails(&errdetails.ErrorInfo{}, retryIn(duration(time.Second))), after(time.Second)},
		{"negative", withDetails(retryIn(duration(-time.Second))), refuse},
		{"invalid", withDetails(retryIn(&durationpb.Duration{Seconds: 1, Nanos: -5})), refuse},
		{"too long", withDetails(retryIn(duration(pushback.Max + time.Millisecond))), refuse},
		{"repeated", withDetails(retryIn(duration(time.Second)), retryIn(duration(time.Second))), refuse},
		{"undecodable", withRaw("type.googleapis.com/google.rpc.RetryInfo", []byte{0xff}), refuse},
		{"bare type name", withRaw("google.rpc.RetryInfo", valid), after(time.Second)},
		{"other host", withRaw("example.com/google.rpc.RetryInfo", valid), after(time.Second)},
		{"longer name", withRaw("type.googleapis.com/xgoogle.rpc.RetryInfo", valid), none},
		{"name as prefix", withRaw("type.googleapis.com/google.rpc.RetryInfoX", valid), none},
	}
	for _, tt := range tests {
		if got := pushback.RetryInfo(tt.st); got != tt.want {
			t.Errorf("%s: RetryInfo = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRead(t *testing.T) {
	hour := withDetails(retryIn(duration(time.Hour))).Err()
	tests := []struct {
		name    string
		trailer metadata.MD
		err     error
		want    pushback.Pushback
	}{
		{"nothing", nil, nil, none},
		{"plain error", nil, errors.New("x"), none},
		{"plain status", nil, status.Error(codes.Unavailable, "x"), none},
		{"trailer", metadata.Pairs(pushback.Metadata, "3"), status.Error(codes.Unavailable, "x"), after(3 * time.Millisecond)},
		{"trailer on success", metadata.Pairs(pushback.Metadata, "3"), nil, after(3 * time.Millisecond)},
		{"retry info", nil, hour, after(time.Hour)},
		{"the trailer wins", metadata.Pairs(pushback.Metadata, "3"), hour, after(3 * time.Millisecond)},
		{"a malformed trailer wins too", metadata.Pairs(pushback.Metadata, "x"), hour, refuse},
		{"other trailers are not read", metadata.Pairs("retry-after", "3"), nil, none},
		{"retry info without delay", nil, withDetails(retryIn(nil)).Err(), none},
	}
	for _, tt := range tests {
		if got := pushback.Read(tt.trailer, tt.err); got != tt.want {
			t.Errorf("%s: Read = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// check holds what every pushback must satisfy.
func check(t *testing.T, p pushback.Pushback) {
	t.Helper()
	if (p.Allow && !p.Present) || p.Delay < 0 || p.Delay > pushback.Max || (!p.Allow && p.Delay != 0) {
		t.Fatalf("inconsistent %+v", p)
	}
}

func FuzzTrailer(f *testing.F) {
	for _, s := range []string{"0", "100", "-1", "abc", "2147483648", "", "0010", "+1", "١٢"} {
		f.Add(s, uint8(1))
	}
	f.Add("5", uint8(2))
	f.Add("5", uint8(0))
	f.Fuzz(func(t *testing.T, s string, repeat uint8) {
		vals := make([]string, int(repeat%4))
		for i := range vals {
			vals[i] = s
		}
		p := pushback.Trailer(vals)
		check(t, p)
		if p.Present != (len(vals) > 0) {
			t.Fatalf("Present = %v for %d values", p.Present, len(vals))
		}
		if p.Allow && (len(vals) != 1 || s == "" || strings.TrimLeft(s, "0123456789") != "") {
			t.Fatalf("allowed %q: %+v", vals, p)
		}
	})
}

func FuzzRetryInfo(f *testing.F) {
	seed := func(st *status.Status) {
		b, err := proto.Marshal(st.Proto())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(withDetails(retryIn(duration(time.Second))))
	seed(withDetails(retryIn(&durationpb.Duration{Seconds: -1})))
	seed(withDetails(retryIn(nil), &errdetails.ErrorInfo{Reason: "r"}))
	seed(withDetails(retryIn(duration(time.Second)), retryIn(duration(time.Second))))
	f.Add([]byte{0x1a, 0x03, 0x0a, 0x01, 0x78})
	f.Fuzz(func(t *testing.T, data []byte) {
		var sp spb.Status
		if proto.Unmarshal(data, &sp) != nil {
			return
		}
		st := status.FromProto(&sp)
		p := pushback.RetryInfo(st)
		check(t, p)
		if got := pushback.Read(nil, st.Err()); st.Code() != codes.OK && got != p {
			t.Fatalf("Read = %+v, RetryInfo = %+v", got, p)
		}
	})
}
