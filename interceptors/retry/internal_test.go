package retry

import (
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

	"github.com/failsoft/failsoft/interceptors/clock"
)

func TestBackoffFormula(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{1, 0, 0},
		{1, 0.5, 25 * ms},
		{2, 0.5, 50 * ms},
		{3, 0.5, 100 * ms},
		{6, 0.5, 500 * ms},   // 50 ms * 2^5 = 1.6 s, capped at 1 s
		{100, 0.5, 500 * ms}, // no overflow
		{1, 1, 50*ms - 1},    // r clamped below 1
		{1, -3, 0},
	}
	for _, tt := range tests {
		if got := backoff(50*ms, time.Second, 2, tt.n, tt.r); got != tt.want {
			t.Errorf("backoff(n=%d, r=%v) = %v, want %v", tt.n, tt.r, got, tt.want)
		}
	}
}

func TestParsePushback(t *testing.T) {
	tests := []struct {
		in      []string
		present bool
		allow   bool
		delay   time.Duration
	}{
		{nil, false, false, 0},
		{[]string{"0"}, true, true, 0},
		{[]string{"1500"}, true, true, 1500 * time.Millisecond},
		{[]string{"2147483647"}, true, true, 2147483647 * time.Millisecond},
		{[]string{"2147483648"}, true, false, 0},
		{[]string{"-1"}, true, false, 0},
		{[]string{"+5"}, true, false, 0},
		{[]string{" 5"}, true, false, 0},
		{[]string{""}, true, false, 0},
		{[]string{"1e3"}, true, false, 0},
		{[]string{"99999999999999999999"}, true, false, 0},
		{[]string{"5", "5"}, true, false, 0},
	}
	for _, tt := range tests {
		p := parsePushback(tt.in)
		if p.present != tt.present || p.allow != tt.allow || p.delay != tt.delay {
			t.Errorf("parsePushback(%q) = %+v", tt.in, p)
		}
	}
}

func statusWith(details ...proto.Message) *status.Status {
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

func TestParseRetryInfo(t *testing.T) {
	ri := func(d *durationpb.Duration) *errdetails.RetryInfo { return &errdetails.RetryInfo{RetryDelay: d} }
	tests := []struct {
		name    string
		st      *status.Status
		present bool
		allow   bool
		delay   time.Duration
	}{
		{"none", statusWith(), false, false, 0},
		{"other detail", statusWith(&errdetails.ErrorInfo{Reason: "x"}), false, false, 0},
		{"valid", statusWith(ri(durationpb.New(2 * time.Second))), true, true, 2 * time.Second},
		{"zero", statusWith(ri(durationpb.New(0))), true, true, 0},
		{"no delay", statusWith(ri(nil)), false, false, 0},
		{"negative", statusWith(ri(durationpb.New(-time.Second))), true, false, 0},
		{"invalid", statusWith(ri(&durationpb.Duration{Seconds: 1, Nanos: -5})), true, false, 0},
		{"too long", statusWith(ri(durationpb.New(100 * 24 * time.Hour))), true, false, 0},
		{"repeated", statusWith(ri(durationpb.New(time.Second)), ri(durationpb.New(time.Second))), true, false, 0},
		{"nil status", nil, false, false, 0},
	}
	for _, tt := range tests {
		p := parseRetryInfo(tt.st)
		if p.present != tt.present || p.allow != tt.allow || p.delay != tt.delay {
			t.Errorf("%s: %+v", tt.name, p)
		}
	}
	// Undecodable RetryInfo: do not retry.
	sp := &spb.Status{Code: 14, Details: []*anypb.Any{{TypeUrl: "type.googleapis.com/google.rpc.RetryInfo", Value: []byte{0xff}}}}
	if p := parseRetryInfo(status.FromProto(sp)); !p.present || p.allow {
		t.Errorf("undecodable: %+v", p)
	}
	// The trailer wins.
	md := metadata.Pairs(PushbackMetadata, "3")
	if p := serverPushback(md, statusWith(ri(durationpb.New(time.Hour))).Err()); p.delay != 3*time.Millisecond || p.source != "trailer" {
		t.Errorf("serverPushback = %+v", p)
	}
}

func FuzzPushback(f *testing.F) {
	for _, s := range []string{"0", "100", "-1", "abc", "2147483648", "", "0010"} {
		f.Add(s, uint8(1))
	}
	f.Add("5", uint8(2))
	f.Fuzz(func(t *testing.T, s string, repeat uint8) {
		vals := make([]string, int(repeat%4))
		for i := range vals {
			vals[i] = s
		}
		p := parsePushback(vals)
		if p.present != (len(vals) > 0) {
			t.Fatalf("present = %v for %d values", p.present, len(vals))
		}
		if p.allow {
			if len(vals) != 1 || p.delay < 0 || p.delay > maxPushback*time.Millisecond {
				t.Fatalf("allowed %q: %+v", vals, p)
			}
			if strings.TrimLeft(s, "0123456789") != "" {
				t.Fatalf("allowed non-digits %q", s)
			}
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
	seed(statusWith(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}))
	seed(statusWith(&errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Seconds: -1}}))
	seed(statusWith(&errdetails.RetryInfo{}, &errdetails.ErrorInfo{Reason: "r"}))
	f.Add([]byte{0x1a, 0x03, 0x0a, 0x01, 0x78})
	f.Fuzz(func(t *testing.T, data []byte) {
		var sp spb.Status
		if proto.Unmarshal(data, &sp) != nil {
			return
		}
		p := parseRetryInfo(status.FromProto(&sp))
		if p.allow && (!p.present || p.delay < 0 || p.delay > maxPushback*time.Millisecond) {
			t.Fatalf("%+v", p)
		}
		_ = serverPushback(nil, status.FromProto(&sp).Err())
	})
}

func TestBucket(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	k := newBucket(Budget{Ratio: 0.25, MinPerSecond: 0.2, TTL: 10 * time.Second}, clk.Now())
	// The floor: 0.2/s over 10 s is two tokens.
	for i := range 2 {
		if !k.withdraw(clk.Now()) {
			t.Fatalf("withdraw %d refused within the floor", i)
		}
	}
	if k.withdraw(clk.Now()) || k.allows(clk.Now()) {
		t.Fatal("a spent budget allowed a withdrawal")
	}
	for range 4 {
		k.deposit(clk.Now())
	}
	if !k.allows(clk.Now()) || !k.withdraw(clk.Now()) || k.withdraw(clk.Now()) {
		t.Fatal("four deposits of 0.25 must make exactly one token")
	}
	k.refund(clk.Now())
	if !k.withdraw(clk.Now()) {
		t.Fatal("a refunded token cannot be spent again")
	}
	// Ten seconds later, what was spent and deposited has expired: the
	// floor is back, the deposits are gone.
	clk.Advance(10 * time.Second)
	n := 0
	for k.withdraw(clk.Now()) {
		n++
	}
	if n != 2 {
		t.Fatalf("after the window: %d tokens, want the floor's 2", n)
	}
}

func TestBudgetsByTarget(t *testing.T) {
	bs := newBudgets(DefaultBudget, clock.System())
	a, b := bs.get("a"), bs.get("b")
	if a == b || bs.get("a") != a || bs.get("b") != b {
		t.Fatal("targets must have their own bucket")
	}
	for i := range maxTargets + 5 {
		bs.get(strings.Repeat("x", i+1))
	}
	if n := len(*bs.m.Load()); n != maxTargets || bs.extra == nil || bs.get("one more") != bs.extra {
		t.Fatalf("%d buckets", n)
	}
}

func TestLatencyQuantile(t *testing.T) {
	l := &latency{q: 0.9}
	for i := 1; i < latencyEvery; i++ {
		l.add(time.Duration(i) * time.Millisecond)
	}
	if _, ok := l.get(); ok {
		t.Fatal("quantile before enough samples")
	}
	l.add(latencyEvery * time.Millisecond)
	if d, ok := l.get(); !ok || d != 29*time.Millisecond {
		t.Fatalf("p90 of 1..32 ms = %v, %v; want 29ms", d, ok)
	}
	for i := range 2 * latencySamples {
		l.add(time.Duration(1000+i%8) * time.Millisecond)
	}
	if d, _ := l.get(); d != 1007*time.Millisecond {
		t.Fatalf("p90 after the window moved = %v", d)
	}
}

func TestStopErrorStatus(t *testing.T) {
	st, _ := status.New(codes.Unavailable, "down").WithDetails(&errdetails.DebugInfo{Detail: "d"})
	last := st.Err()
	e := newStopError("deadline", 2, "dns:///x", last, "next attempt due in 1s, 10ms left")
	got := status.Convert(e)
	if got.Code() != codes.Unavailable || got.Message() != "failsoft: retry: retries cut short by the deadline after 2 attempts (next attempt due in 1s, 10ms left); last attempt: down" {
		t.Fatalf("status = %v", got)
	}
	if ds := got.Details(); len(ds) != 2 {
		t.Fatalf("details = %v", ds)
	}
	if e.Unwrap() != last || e.Overloaded() {
		t.Fatal("Unwrap/Overloaded")
	}
}
