package policy_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/policy"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	plain  = "/failsoft.policytest.v1.PlainService/"
	tuned  = "/failsoft.policytest.v1.TunedService/"
	broken = "/failsoft.policytest.broken.v1.BrokenService/"
)

func mustNew(t testing.TB, opts ...policy.Option) *policy.Resolver {
	t.Helper()
	r, err := policy.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolve(t *testing.T) {
	_ = policytestv1.File_failsoft_policytest_v1_policytest_proto
	r := mustNew(t)
	tests := []struct {
		method       string
		described    bool
		idem         policy.Idempotency
		retryable    bool // without key
		retryableKey bool // with key
		hedgeable    bool
		timeout      time.Duration
		minBudget    time.Duration
		attempts     int
		attemptTO    time.Duration
		initial, max time.Duration
		mult         float64
		codes        policy.CodeSet
		hedge        policy.Hedge
		requiresKey  bool
		skipBreaker  bool
	}{
		{method: plain + "Plain", described: true, idem: policy.Unknown, attempts: 3,
			initial: 50 * time.Millisecond, max: 2 * time.Second, mult: 2, codes: policy.Codes(codes.Unavailable)},
		{method: plain + "NoSideEffects", described: true, idem: policy.NoSideEffects, retryable: true, retryableKey: true, attempts: 3,
			initial: 50 * time.Millisecond, max: 2 * time.Second, mult: 2, codes: policy.Codes(codes.Unavailable)},
		{method: plain + "Idempotent", described: true, idem: policy.Idempotent, retryable: true, retryableKey: true, attempts: 3,
			initial: 50 * time.Millisecond, max: 2 * time.Second, mult: 2, codes: policy.Codes(codes.Unavailable)},
		{method: "/unknown.v1.Nowhere/Call", idem: policy.Unknown, attempts: 3,
			initial: 50 * time.Millisecond, max: 2 * time.Second, mult: 2, codes: policy.Codes(codes.Unavailable)},
		{method: plain + "Missing", idem: policy.Unknown, attempts: 3,
			initial: 50 * time.Millisecond, max: 2 * time.Second, mult: 2, codes: policy.Codes(codes.Unavailable)},
		{method: "not-a-method", idem: policy.Unknown, attempts: 3,
			initial: 50 * time.Millisecond, max: 2 * time.Second, mult: 2, codes: policy.Codes(codes.Unavailable)},
		{method: tuned + "Inherit", described: true, idem: policy.Unknown, timeout: 5 * time.Second, minBudget: 50 * time.Millisecond,
			attempts: 4, initial: 20 * time.Millisecond, max: time.Second, mult: 3, codes: policy.Codes(codes.Unavailable, codes.ResourceExhausted)},
		{method: tuned + "Override", described: true, idem: policy.Idempotent, retryable: true, retryableKey: true, timeout: 2 * time.Second,
			minBudget: 50 * time.Millisecond, attempts: 2, attemptTO: 500 * time.Millisecond, initial: 20 * time.Millisecond, max: time.Second,
			mult: 3, codes: policy.Codes(codes.Unavailable, codes.ResourceExhausted)},
		{method: tuned + "Hedged", described: true, idem: policy.NoSideEffects, retryable: true, retryableKey: true, hedgeable: true,
			timeout: 5 * time.Second, minBudget: 50 * time.Millisecond, attempts: 4, initial: 20 * time.Millisecond, max: time.Second, mult: 3,
			codes: policy.Codes(codes.Unavailable, codes.ResourceExhausted), hedge: policy.Hedge{Delay: 100 * time.Millisecond, MaxAttempts: 3}},
		{method: tuned + "HedgedQuantile", described: true, idem: policy.NoSideEffects, retryable: true, retryableKey: true, hedgeable: true,
			timeout: 5 * time.Second, minBudget: 50 * time.Millisecond, attempts: 4, initial: 20 * time.Millisecond, max: time.Second, mult: 3,
			codes: policy.Codes(codes.Unavailable, codes.ResourceExhausted), hedge: policy.Hedge{Delay: 200 * time.Millisecond, MaxAttempts: 2, Quantile: 0.95}},
		{method: tuned + "KeyedWrite", described: true, idem: policy.Unknown, retryableKey: true, requiresKey: true, skipBreaker: true,
			timeout: 5 * time.Second, minBudget: 50 * time.Millisecond, attempts: 4, initial: 20 * time.Millisecond, max: time.Second, mult: 3,
			codes: policy.Codes(codes.Unavailable, codes.ResourceExhausted)},
		{method: tuned + "Vetoed", described: true, idem: policy.NotIdempotent, timeout: 5 * time.Second, minBudget: 50 * time.Millisecond,
			attempts: 4, initial: 20 * time.Millisecond, max: time.Second, mult: 3, codes: policy.Codes(codes.Unavailable, codes.ResourceExhausted)},
		{method: tuned + "Watch", described: true, idem: policy.NoSideEffects, retryable: true, retryableKey: true, timeout: 5 * time.Second,
			minBudget: 50 * time.Millisecond, attempts: 4, initial: 20 * time.Millisecond, max: time.Second, mult: 3,
			codes: policy.Codes(codes.Unavailable, codes.ResourceExhausted)},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			p, err := r.Resolve(tc.method)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(p.Method, p.Described, p.Idempotency, p.Retryable(false), p.Retryable(true), p.Hedgeable(),
				p.Timeout, p.MinBudget, p.Retry.MaxAttempts, p.Retry.AttemptTimeout, p.Retry.InitialBackoff, p.Retry.MaxBackoff,
				p.Retry.Multiplier, p.Retry.Codes, p.Hedge, p.RequiresKey, p.SkipBreaker)
			want := fmt.Sprint(tc.method, tc.described, tc.idem, tc.retryable, tc.retryableKey, tc.hedgeable,
				tc.timeout, tc.minBudget, tc.attempts, tc.attemptTO, tc.initial, tc.max, tc.mult, tc.codes, tc.hedge, tc.requiresKey, tc.skipBreaker)
			if got != want {
				t.Errorf("Resolve(%s)\n got %s\nwant %s", tc.method, got, want)
			}
			again, _ := r.Resolve(tc.method)
			if again != p {
				t.Error("second Resolve returned a different policy: not cached")
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	r := mustNew(t)
	tests := []struct{ method, field string }{
		{"ZeroTimeout", "timeout"},
		{"NegativeMinBudget", "min_budget"},
		{"ZeroAttempts", "retry.max_attempts"},
		{"TooManyAttempts", "retry.max_attempts"},
		{"BackoffCapBelowInitial", "retry.max_backoff"},
		{"SmallMultiplier", "retry.backoff_multiplier"},
		{"UnknownCode", "retry.retryable_codes"},
		{"RetryOnOK", "retry.retryable_codes"},
		{"HedgeNotSafe", "hedge"},
		{"HedgeNoDelay", "hedge.delay"},
		{"BadQuantile", "hedge.latency_quantile"},
		{"ZeroAttemptTimeout", "retry.per_attempt_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			p, err := r.Resolve(broken + tc.method)
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("want *policy.Error, got %v", err)
			}
			if pe.Method != broken+tc.method || pe.Field != tc.field {
				t.Errorf("error names %s %s, want %s %s (%v)", pe.Method, pe.Field, broken+tc.method, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.method) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name the method and field", err)
			}
			if p == nil || p.Retryable(true) || p.Hedgeable() {
				t.Errorf("invalid options must resolve to the conservative policy, got %+v", p)
			}
		})
	}
	err := r.Validate()
	for _, tc := range tests {
		if !strings.Contains(err.Error(), broken+tc.method+": "+tc.field) {
			t.Errorf("Validate() misses %s: %v", tc.method, err)
		}
	}
	if strings.Contains(err.Error(), "TunedService") || strings.Contains(err.Error(), "PlainService") {
		t.Errorf("Validate() reports valid services: %v", err)
	}
}

func TestCodeOverrides(t *testing.T) {
	r := mustNew(t,
		policy.WithDefaults(&failsoftv1.MethodPolicy{Timeout: durationpb.New(7 * time.Second)}),
		policy.WithService("thirdparty.v1.Search", &failsoftv1.MethodPolicy{
			Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_NO_SIDE_EFFECTS,
			Retry:       &failsoftv1.RetryPolicy{MaxAttempts: proto.Uint32(5)},
		}),
		policy.WithMethod("/thirdparty.v1.Search/Index", &failsoftv1.MethodPolicy{
			Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_NOT_IDEMPOTENT,
		}),
		policy.WithMethod(plain+"Plain", &failsoftv1.MethodPolicy{
			Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_IDEMPOTENT,
			Retry:       &failsoftv1.RetryPolicy{RetryableCodes: []string{"ABORTED"}},
		}),
	)
	tests := []struct {
		method    string
		retryable bool
		attempts  int
		codes     policy.CodeSet
	}{
		{"/thirdparty.v1.Search/Query", true, 5, policy.Codes(codes.Unavailable)},
		{"/thirdparty.v1.Search/Index", false, 5, policy.Codes(codes.Unavailable)},
		{plain + "Plain", true, 3, policy.Codes(codes.Aborted)},
		{plain + "NoSideEffects", true, 3, policy.Codes(codes.Unavailable)},
	}
	for _, tc := range tests {
		p, err := r.Resolve(tc.method)
		if err != nil {
			t.Fatal(err)
		}
		if p.Retryable(false) != tc.retryable || p.Retry.MaxAttempts != tc.attempts || p.Retry.Codes != tc.codes || p.Timeout != 7*time.Second {
			t.Errorf("%s: got retryable=%v attempts=%d codes=%v timeout=%v", tc.method, p.Retryable(false), p.Retry.MaxAttempts, p.Retry.Codes, p.Timeout)
		}
	}
}

func TestNewRejectsInvalidOverrides(t *testing.T) {
	tests := []struct {
		name string
		opt  policy.Option
		want string
	}{
		{"bad method name", policy.WithMethod("Charge", &failsoftv1.MethodPolicy{}), `WithMethod("Charge")`},
		{"nil method policy", policy.WithMethod("/a.B/C", nil), "non-nil"},
		{"bad service name", policy.WithService("/a.B", &failsoftv1.MethodPolicy{}), "WithService"},
		{"nil defaults", policy.WithDefaults(nil), "WithDefaults"},
		{"nil files", policy.WithFiles(nil), "WithFiles"},
		{"attempts", policy.WithMethod("/a.B/C", &failsoftv1.MethodPolicy{Retry: &failsoftv1.RetryPolicy{MaxAttempts: proto.Uint32(0)}}), "/a.B/C: retry.max_attempts"},
		{"hedge unsafe", policy.WithMethod("/a.B/C", &failsoftv1.MethodPolicy{Hedge: &failsoftv1.HedgePolicy{Delay: durationpb.New(time.Millisecond), MaxAttempts: proto.Uint32(2)}}), "/a.B/C: hedge: hedging needs"},
		{"default code", policy.WithDefaults(&failsoftv1.MethodPolicy{Retry: &failsoftv1.RetryPolicy{RetryableCodes: []string{"NOPE"}}}), "defaults: retry.retryable_codes"},
		{"service timeout", policy.WithService("a.B", &failsoftv1.MethodPolicy{Timeout: durationpb.New(-time.Second)}), "a.B: timeout: must be positive"},
		{"invalid duration", policy.WithDefaults(&failsoftv1.MethodPolicy{Timeout: &durationpb.Duration{Seconds: 1, Nanos: -1}}), "defaults: timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.New(tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDescriptorSet(t *testing.T) {
	// A registry holding only the test file: the same options resolve from it.
	fdp := protodesc.ToFileDescriptorProto(policytestv1.File_failsoft_policytest_v1_policytest_proto)
	deps := []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto),
		protodesc.ToFileDescriptorProto(durationpb.File_google_protobuf_duration_proto),
		protodesc.ToFileDescriptorProto(failsoftv1.File_failsoft_v1_options_proto),
	}
	set := &descriptorpb.FileDescriptorSet{File: append(deps, fdp)}
	r := mustNew(t, policy.WithDescriptorSet(set))
	p, err := r.Resolve(tuned + "Hedged")
	if err != nil || !p.Hedgeable() || p.Hedge.Delay != 100*time.Millisecond {
		t.Fatalf("from descriptor set: %+v, %v", p, err)
	}
	empty := mustNew(t, policy.WithFiles(new(protoregistry.Files)))
	if p, _ := empty.Resolve(tuned + "Hedged"); p.Described || p.Retryable(true) {
		t.Fatalf("empty registry must give the conservative default, got %+v", p)
	}
	if _, err := policy.New(policy.WithDescriptorSet(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{fdp}})); err == nil {
		t.Fatal("a descriptor set with missing imports must be refused")
	}
}

// TestGolden pins the extension numbers and the resolved policy of every
// test method. buf breaking does not notice a renumbered custom option, and
// retry safety depends on reading these options back.
func TestGolden(t *testing.T) {
	var b strings.Builder
	for _, x := range []protoreflect.ExtensionType{failsoftv1.E_Method, failsoftv1.E_ServiceDefault} {
		d := x.TypeDescriptor()
		fmt.Fprintf(&b, "extension %s = %d on %s\n", d.FullName(), d.Number(), d.ContainingMessage().FullName())
	}
	for _, md := range []protoreflect.MessageDescriptor{
		(&failsoftv1.MethodPolicy{}).ProtoReflect().Descriptor(),
		(&failsoftv1.RetryPolicy{}).ProtoReflect().Descriptor(),
		(&failsoftv1.HedgePolicy{}).ProtoReflect().Descriptor(),
	} {
		for i := 0; i < md.Fields().Len(); i++ {
			f := md.Fields().Get(i)
			fmt.Fprintf(&b, "field %s = %d %s\n", f.FullName(), f.Number(), f.Kind())
		}
	}
	ev := failsoftv1.Idempotency(0).Descriptor().Values()
	for i := 0; i < ev.Len(); i++ {
		fmt.Fprintf(&b, "enum %s = %d\n", ev.Get(i).FullName(), ev.Get(i).Number())
	}
	r := mustNew(t)
	var methods []string
	for _, fd := range []protoreflect.FileDescriptor{
		policytestv1.File_failsoft_policytest_v1_policytest_proto,
		brokenv1.File_failsoft_policytest_broken_v1_broken_proto,
	} {
		sd := fd.Services()
		for i := 0; i < sd.Len(); i++ {
			for j := 0; j < sd.Get(i).Methods().Len(); j++ {
				methods = append(methods, "/"+string(sd.Get(i).FullName())+"/"+string(sd.Get(i).Methods().Get(j).Name()))
			}
		}
	}
	sort.Strings(methods)
	for _, m := range methods {
		p, err := r.Resolve(m)
		fmt.Fprintf(&b, "%s %+v err=%v\n", m, *p, err)
	}
	path := filepath.Join("testdata", "golden.txt")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("resolved policies differ from %s (run go test -update after checking the change):\n%s", path, diff(string(want), got))
	}
}

func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "-%s\n+%s\n", x, y)
		}
	}
	return out.String()
}

func TestSplitMethod(t *testing.T) {
	tests := []struct {
		in, svc, m string
		ok         bool
	}{
		{"/a.B/C", "a.B", "C", true},
		{"/payments.v1.PaymentService/Charge", "payments.v1.PaymentService", "Charge", true},
		{"a.B/C", "", "", false},
		{"/a.B/", "", "", false},
		{"//C", "", "", false},
		{"", "", "", false},
		{"/", "", "", false},
	}
	for _, tc := range tests {
		s, m, ok := policy.SplitMethod(tc.in)
		if s != tc.svc || m != tc.m || ok != tc.ok {
			t.Errorf("SplitMethod(%q) = %q %q %v", tc.in, s, m, ok)
		}
	}
}

func TestParseCode(t *testing.T) {
	for name := range map[string]codes.Code{"UNAVAILABLE": codes.Unavailable, "cancelled": codes.Canceled, " DATA_LOSS ": codes.DataLoss} {
		if _, err := policy.ParseCode(name); err != nil {
			t.Errorf("ParseCode(%q): %v", name, err)
		}
	}
	if _, err := policy.ParseCode("FLAKY"); err == nil {
		t.Error("ParseCode accepted FLAKY")
	}
}

func FuzzSplitMethod(f *testing.F) {
	for _, s := range []string{"/a.B/C", "", "/", "//", "/a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		svc, m, ok := policy.SplitMethod(s)
		if ok && "/"+svc+"/"+m != s {
			t.Fatalf("SplitMethod(%q) = %q, %q does not rebuild the input", s, svc, m)
		}
		r := policy.Default()
		p, _ := r.Resolve(s)
		if p == nil || p.Method != s {
			t.Fatalf("Resolve(%q) = %+v", s, p)
		}
	})
}

func BenchmarkResolveCached(b *testing.B) {
	r := mustNew(b)
	m := tuned + "Hedged"
	if _, err := r.Resolve(m); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if p, _ := r.Resolve(m); p == nil {
			b.Fatal("nil policy")
		}
	}
}

func BenchmarkResolveCachedParallel(b *testing.B) {
	r := mustNew(b)
	m := tuned + "Hedged"
	r.Resolve(m)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Resolve(m)
		}
	})
}

// FuzzMethodPolicy feeds arbitrary option bytes, as a descriptor from an
// untrusted descriptor set could carry them, through validation: either
// the policy is refused with an *Error, or every resolved value is sane.
func FuzzMethodPolicy(f *testing.F) {
	seeds := []*failsoftv1.MethodPolicy{
		{Timeout: durationpb.New(time.Second)},
		{Retry: &failsoftv1.RetryPolicy{MaxAttempts: proto.Uint32(0)}},
		{Idempotency: failsoftv1.Idempotency_IDEMPOTENCY_NO_SIDE_EFFECTS, Hedge: &failsoftv1.HedgePolicy{Delay: durationpb.New(time.Millisecond), MaxAttempts: proto.Uint32(2)}},
		{Retry: &failsoftv1.RetryPolicy{RetryableCodes: []string{"UNAVAILABLE", "nope"}, BackoffMultiplier: proto.Float64(-1)}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var mp failsoftv1.MethodPolicy
		if proto.Unmarshal(b, &mp) != nil {
			return
		}
		r, err := policy.New(policy.WithMethod("/f.v1.S/M", &mp))
		if err != nil {
			var pe *policy.Error
			if !errors.As(err, &pe) || pe.Method != "/f.v1.S/M" {
				t.Fatalf("refusal does not name the method: %v", err)
			}
			return
		}
		p, err := r.Resolve("/f.v1.S/M")
		if err != nil {
			t.Fatalf("validated in New but not in Resolve: %v", err)
		}
		switch {
		case p.Retry.MaxAttempts < 1 || p.Retry.MaxAttempts > policy.MaxRetryAttempts:
			t.Fatalf("max attempts %d", p.Retry.MaxAttempts)
		case p.Retry.InitialBackoff <= 0 || p.Retry.MaxBackoff < p.Retry.InitialBackoff || p.Retry.Multiplier < 1:
			t.Fatalf("backoff %+v", p.Retry)
		case p.Timeout < 0 || p.MinBudget < 0:
			t.Fatalf("timeout %v min budget %v", p.Timeout, p.MinBudget)
		case p.Hedgeable() && (p.Idempotency != policy.NoSideEffects || p.Hedge.Delay <= 0):
			t.Fatalf("hedging %+v on %v", p.Hedge, p.Idempotency)
		case p.Retry.Codes.Has(codes.OK):
			t.Fatal("OK is retryable")
		}
	})
}

// TestRetryableWithKey: a method that requires an idempotency key is
// retried when the call carries one, whatever its idempotency level says,
// and never without one unless the level alone allows it.
func TestRetryableWithKey(t *testing.T) {
	for _, tc := range []struct {
		idem           policy.Idempotency
		requiresKey    bool
		noKey, withKey bool
	}{
		{policy.NotIdempotent, true, false, true},
		{policy.Unknown, true, false, true},
		{policy.Idempotent, true, true, true},
		{policy.NotIdempotent, false, false, false},
		{policy.Unknown, false, false, false},
		{policy.NoSideEffects, false, true, true},
	} {
		p := &policy.Policy{Idempotency: tc.idem, RequiresKey: tc.requiresKey, Retry: policy.Retry{MaxAttempts: 3}}
		if got := p.Retryable(false); got != tc.noKey {
			t.Errorf("%v, requires key %v: Retryable(no key) = %v, want %v", tc.idem, tc.requiresKey, got, tc.noKey)
		}
		if got := p.Retryable(true); got != tc.withKey {
			t.Errorf("%v, requires key %v: Retryable(key) = %v, want %v", tc.idem, tc.requiresKey, got, tc.withKey)
		}
	}
}

// TestWithMethodUnknown: a policy for a method that its registered service
// does not have is refused, naming the method; methods of services that
// are not registered are accepted, and Unmatched names them.
func TestWithMethodUnknown(t *testing.T) {
	p := &failsoftv1.MethodPolicy{Timeout: durationpb.New(time.Second)}
	for _, tc := range []struct {
		method    string
		wantErr   string
		unmatched bool
	}{
		{"/failsoft.policytest.v1.PlainService/Pnig", `policy.WithMethod("/failsoft.policytest.v1.PlainService/Pnig"): service failsoft.policytest.v1.PlainService has no method Pnig`, false},
		{"/failsoft.policytest.v1.PingRequest/Ping", "not a service", false},
		{"/failsoft.policytest.v1.PlainService/Plain", "", false},
		{"/elsewhere.v1.NotLinked/Anything", "", true},
		{"/failsoft.policytst.v1.PlainService/Plain", "", true}, // misspelt package
	} {
		r, err := policy.New(policy.WithMethod(tc.method, p))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.method, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one with %q", tc.method, err, tc.wantErr)
		}
		if r == nil {
			continue
		}
		if got := r.Unmatched(); (len(got) == 1 && got[0] == tc.method) != tc.unmatched || len(got) > 1 {
			t.Errorf("%s: Unmatched() = %q, want it listed: %v", tc.method, got, tc.unmatched)
		}
	}
}

// TestWithServiceUnknown: a policy for a service that its registered
// package lacks is refused, naming the service; services of packages that
// are not registered are accepted, and Unmatched names them.
func TestWithServiceUnknown(t *testing.T) {
	p := &failsoftv1.MethodPolicy{Timeout: durationpb.New(time.Second)}
	for _, tc := range []struct {
		service   string
		wantErr   string
		unmatched bool
	}{
		{"failsoft.policytest.v1.PlainServic", `policy.WithService("failsoft.policytest.v1.PlainServic"): package failsoft.policytest.v1 has no service PlainServic`, false},
		{"failsoft.policytest.v1.PingRequest", "not a service", false},
		{"failsoft.policytest.v1.PlainService", "", false},
		{"elsewhere.v1.NotLinked", "", true},
		{"failsoft.policytst.v1.PlainService", "", true}, // misspelt package
	} {
		r, err := policy.New(policy.WithService(tc.service, p))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.service, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one with %q", tc.service, err, tc.wantErr)
		}
		if r == nil {
			continue
		}
		if got := r.Unmatched(); (len(got) == 1 && got[0] == tc.service) != tc.unmatched || len(got) > 1 {
			t.Errorf("%s: Unmatched() = %q, want it listed: %v", tc.service, got, tc.unmatched)
		}
	}
}
