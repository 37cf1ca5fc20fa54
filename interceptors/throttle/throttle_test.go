package throttle

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

func TestProbability(t *testing.T) {
	tests := []struct {
		req, acc uint64
		k, limit float64
		want     float64
	}{
		{0, 0, 2, 0.9, 0},
		{1, 0, 2, 0.9, 0.5},         // (1-0)/(1+1)
		{1, 0, 2, 0.3, 0.3},         // capped
		{10, 5, 2, 0.9, 0},          // 10 - 2*5 = 0
		{10, 4, 2, 0.9, 2.0 / 11},   // (10-8)/11
		{100, 0, 2, 0.9, 0.9},       // 100/101 capped
		{100, 0, 2, 1, 100.0 / 101}, // uncapped
		{150, 100, 2, 0.9, 0},       // 1.5x offered, K=2: never throttled
		{400, 100, 2, 0.9, 200.0 / 401},
		{150, 100, 1.1, 0.9, 40.0 / 151},
		{100, 100, 1, 0.9, 0}, // K=1, all accepted
		{5, 5, 1, 1, 0},
		{1000, 1, 1.5, 0, 0}, // cap 0 turns throttling off
	}
	for _, tc := range tests {
		got := probability(tc.req, tc.acc, tc.k, tc.limit)
		if math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("probability(%d, %d, K=%v, cap=%v) = %v, want %v", tc.req, tc.acc, tc.k, tc.limit, got, tc.want)
		}
	}
}

func TestRing(t *testing.T) {
	type op struct {
		idx          uint64
		req, acc     bool
		wantR, wantA uint64 // totals at idx after the op
	}
	tests := []struct {
		name    string
		buckets int
		ops     []op
	}{
		{"one bucket counts and forgets", 1, []op{
			{0, true, true, 1, 1},
			{0, true, false, 2, 1},
			{1, true, false, 1, 0}, // new period: the old one is gone
			{5, true, true, 1, 1},
		}},
		{"window of three", 3, []op{
			{0, true, true, 1, 1},
			{1, true, false, 2, 1},
			{2, true, true, 3, 2},
			{3, true, false, 3, 1}, // period 0 left the window
			{4, true, false, 3, 1},
			{6, true, true, 2, 1}, // periods 3 (reused by 6) and 5 are empty; 4 is gone
			{100, true, true, 1, 1},
		}},
		{"late writer counts in the newer period", 2, []op{
			{3, true, true, 1, 1},
			{1, true, false, 0, 0},  // slot of 3, which is newer: counted there,
			{3, false, false, 2, 1}, // as seen from 3
		}},
		{"epochs wrap modulo 2^32", 4, []op{
			{1<<32 - 2, true, true, 1, 1},
			{1<<32 - 1, true, true, 2, 2},
			{1 << 32, true, false, 3, 2},
			{1<<32 + 1, true, false, 4, 2},
			{1<<32 + 2, true, false, 4, 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(tc.buckets)
			for i, o := range tc.ops {
				if o.req {
					r.add(o.idx, o.acc)
				}
				if gr, ga := r.totals(o.idx); gr != o.wantR || ga != o.wantA {
					t.Fatalf("op %d at %d: totals = %d, %d; want %d, %d", i, o.idx, gr, ga, o.wantR, o.wantA)
				}
			}
		})
	}
}

func TestRingSaturates(t *testing.T) {
	r := newRing(1)
	r.buckets[0].requests.Store(7<<32 | countMask - 1)
	r.add(7, false)
	r.add(7, false)
	if got, _ := r.totals(7); got != countMask {
		t.Fatalf("saturated count = %d, want %d", got, uint64(countMask))
	}
}

func TestWindowing(t *testing.T) {
	overload := status.Error(codes.ResourceExhausted, "busy")
	// Default window: 2 minutes in 10 buckets of 12 s.
	h := newHarness(t, WithRand(fixed(0.999)), WithMaxProbability(1))
	type step struct {
		advance  time.Duration
		ok, shed int // calls answered OK, RESOURCE_EXHAUSTED
		want     State
	}
	steps := []step{
		{0, 3, 0, State{3, 3, 0}},
		{11 * time.Second, 0, 4, State{7, 3, 1.0 / 8}},   // (7-6)/8, same bucket
		{time.Second, 0, 2, State{9, 3, 3.0 / 10}},       // second bucket
		{107 * time.Second, 0, 0, State{9, 3, 3.0 / 10}}, // 119 s: both still in the window
		{time.Second, 0, 0, State{2, 0, 2.0 / 3}},        // 120 s: the first bucket left
		{11 * time.Second, 0, 0, State{2, 0, 2.0 / 3}},   // 131 s
		{time.Second, 0, 0, State{}},                     // 132 s: all gone
	}
	for i, s := range steps {
		h.clk.Advance(s.advance)
		for range s.ok {
			if err := h.call(nil); err != nil {
				t.Fatal(err)
			}
		}
		for range s.shed {
			if err := h.call(overload); err != overload {
				t.Fatalf("step %d: got %v", i, err)
			}
		}
		if got := h.state(); got.Requests != s.want.Requests || got.Accepts != s.want.Accepts || math.Abs(got.Probability-s.want.Probability) > 1e-12 {
			t.Fatalf("step %d: state %+v, want %+v", i, got, s.want)
		}
	}
}

// TestForgetPresumedRefusals: failures presumed refusals because the
// target still answered are forgotten once it is seen dead or heals;
// RESOURCE_EXHAUSTED is kept, and a sick target's failures keep counting.
func TestForgetPresumedRefusals(t *testing.T) {
	fail := status.Error(codes.Unavailable, "down")
	overload := status.Error(codes.ResourceExhausted, "busy")
	type step struct {
		advance time.Duration
		results []error // in order
	}
	times := func(n int, err error) []error {
		out := make([]error, n)
		for i := range out {
			out[i] = err
		}
		return out
	}
	cat := func(ss ...[]error) []error {
		var out []error
		for _, s := range ss {
			out = append(out, s...)
		}
		return out
	}
	// One answer, 19 failures counted as accepts (too little evidence yet),
	// 41 presumed refusals: 61 requests, 20 accepts.
	wentDown := cat([]error{nil}, times(60, fail))
	tests := []struct {
		name  string
		steps []step
		want  State
	}{
		{"presumed while the target answers", []step{{0, wentDown}}, State{61, 20, 21.0 / 62}},
		{"forgotten when it is seen dead", []step{{0, wentDown}, {time.Second, []error{fail}}}, State{21, 21, 0}},
		{"forgotten when it heals after only failing", []step{{0, wentDown}, {time.Second, []error{nil}}}, State{21, 21, 0}},
		{"forgotten once more at the heal", []step{{0, wentDown}, {time.Second, []error{fail}}, {time.Second, []error{nil}}}, State{22, 22, 0}},
		{"not forgotten a moment later", []step{{0, wentDown}, {999 * time.Millisecond, []error{fail, nil}}}, State{63, 21, 21.0 / 64}},
		{"firm refusals are kept", []step{{0, cat([]error{nil}, times(19, fail), times(41, overload))}, {time.Second, []error{fail}}}, State{62, 21, 20.0 / 63}},
		{"a sick target keeps its presumed refusals", func() []step {
			var ss []step
			for range 30 {
				ss = append(ss, step{500 * time.Millisecond, []error{nil, fail, fail, fail}})
			}
			return ss
		}(), State{120, 45, 30.0 / 121}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, WithRand(fixed(0.999)), WithMaxProbability(1))
			for _, s := range tc.steps {
				h.clk.Advance(s.advance)
				for _, err := range s.results {
					if got := h.call(err); got != err {
						t.Fatalf("got %v, want %v", got, err)
					}
				}
			}
			if got := h.state(); got.Requests != tc.want.Requests || got.Accepts != tc.want.Accepts || math.Abs(got.Probability-tc.want.Probability) > 1e-12 {
				t.Fatalf("state %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	overload := status.Error(codes.ResourceExhausted, "busy")
	tests := []struct {
		name         string
		opts         []Option
		ok, shed     int
		u            float64
		wantRejected bool
		wantP        float64
	}{
		{"fresh target", nil, 0, 0, 0, false, 0},
		{"healthy", nil, 10, 0, 0, false, 0},
		{"at the edge, K=2", nil, 5, 5, 0, false, 0},
		{"over the edge: draw below p", nil, 4, 6, 1.0/11 - 1e-9, true, 2.0 / 11},
		{"over the edge: draw at p", nil, 4, 6, 2.0 / 11, false, 2.0 / 11},
		{"K=1.1", []Option{WithMultiplier(1.1)}, 5, 5, 0.4, true, 4.5 / 11},
		{"all shed, capped", nil, 0, 100, 0.899, true, 0.9},
		{"all shed, draw above cap", nil, 0, 100, 0.9, false, 0.9},
		{"cap 0 never rejects", []Option{WithMaxProbability(0)}, 0, 100, 0, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := 0.999999
			h := newHarness(t, append([]Option{WithRand(func() float64 { return u })}, tc.opts...)...)
			for range tc.ok {
				h.call(nil)
			}
			for range tc.shed {
				h.call(overload)
			}
			before := h.state()
			if math.Abs(before.Probability-tc.wantP) > 1e-12 {
				t.Fatalf("probability %v, want %v", before.Probability, tc.wantP)
			}
			u = tc.u
			sent := h.sent
			err := h.call(nil)
			rej, isRej := outcome.AsRejection(err)
			if isRej != tc.wantRejected {
				t.Fatalf("rejected = %v (%v), want %v", isRej, err, tc.wantRejected)
			}
			after := h.state()
			if after.Requests != before.Requests+1 {
				t.Fatalf("requests %d -> %d: every call counts", before.Requests, after.Requests)
			}
			if !tc.wantRejected {
				if h.sent != sent+1 || after.Accepts != before.Accepts+1 {
					t.Fatalf("an admitted call is sent and counted accepted: sent %d->%d, accepts %d->%d", sent, h.sent, before.Accepts, after.Accepts)
				}
				return
			}
			if h.sent != sent || after.Accepts != before.Accepts {
				t.Fatalf("a rejected call is neither sent nor accepted")
			}
			if rej.Layer != Layer || rej.Code != codes.ResourceExhausted || rej.Target != "passthrough:///svc" {
				t.Fatalf("rejection %+v", rej)
			}
			want := fmt.Sprintf("failsoft: throttle: call to passthrough:///svc rejected locally with probability %.2f: the target accepted %d of the last %d requests in 2m0s", tc.wantP, before.Accepts, before.Requests)
			if s := status.Convert(err); s.Code() != codes.ResourceExhausted || s.Message() != want {
				t.Fatalf("status %v %q, want %q", s.Code(), s.Message(), want)
			}
		})
	}
}

type pushback struct{ error }

func (pushback) Overloaded() bool { return true }

func TestCounting(t *testing.T) {
	inner := &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open"}
	tests := []struct {
		err              error
		opts             []Option
		wantReq, wantAcc uint64
	}{
		{nil, nil, 1, 1},
		{status.Error(codes.NotFound, "x"), nil, 1, 1},
		{status.Error(codes.InvalidArgument, "x"), nil, 1, 1},
		{status.Error(codes.Canceled, "x"), nil, 1, 1},
		{context.Canceled, nil, 1, 1},
		{status.Error(codes.ResourceExhausted, "x"), nil, 1, 0},
		{status.Error(codes.ResourceExhausted, "x"), []Option{WithFailuresAsRejects(false)}, 1, 0},
		{pushback{status.Error(codes.Unavailable, "x")}, nil, 1, 0},
		{status.Error(codes.Unavailable, "x"), nil, 1, 1},
		{status.Error(codes.Internal, "x"), nil, 1, 1},
		{status.Error(codes.DeadlineExceeded, "x"), nil, 1, 1},
		{io.ErrUnexpectedEOF, nil, 1, 1},
		// A target that never answered is down, not overloaded: see
		// TestFailuresOfAnsweringTarget for one that answers.
		{status.Error(codes.Unavailable, "x"), []Option{WithFailuresAsRejects(false)}, 1, 1},
		{status.Error(codes.Unavailable, "x"), []Option{WithClassifier(outcome.Default.With(codes.Unavailable, outcome.Overload))}, 1, 0},
		{inner, nil, 0, 0},
		{fmt.Errorf("wrapped: %w", inner), nil, 0, 0},
		{status.Error(codes.Aborted, "x"), []Option{WithClassifier(outcome.Default.With(codes.Aborted, outcome.Overload))}, 1, 0},
		{status.Error(codes.ResourceExhausted, "x"), []Option{WithClassifier(outcome.Default.With(codes.ResourceExhausted, outcome.Ignored))}, 1, 1},
	}
	for _, tc := range tests {
		h := newHarness(t, tc.opts...)
		if err := h.call(tc.err); err != tc.err {
			t.Fatalf("%v: the caller must see the invoker's error, got %v", tc.err, err)
		}
		if s := h.state(); s.Requests != tc.wantReq || s.Accepts != tc.wantAcc {
			t.Errorf("%v (%d options): counted %d requests, %d accepts; want %d, %d", tc.err, len(tc.opts), s.Requests, s.Accepts, tc.wantReq, tc.wantAcc)
		}
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		opt  Option
		want string // "" for valid
	}{
		{WithWindow(time.Minute, 6), ""},
		{WithWindow(10*time.Millisecond, 10), ""},
		{WithWindow(time.Minute, 0), "throttle.WithWindow(1m0s, 0): buckets must be between 1 and 1024"},
		{WithWindow(time.Minute, 2000), "throttle.WithWindow(1m0s, 2000): buckets must be between 1 and 1024"},
		{WithWindow(0, 1), "throttle.WithWindow(0s, 1): each bucket (window/buckets) must span at least 1ms"},
		{WithWindow(5*time.Millisecond, 10), "throttle.WithWindow(5ms, 10): each bucket (window/buckets) must span at least 1ms"},
		{WithWindow(time.Second+1, 10), "throttle.WithWindow(1.000000001s, 10): window must divide into 10 equal buckets"},
		{WithMultiplier(1), ""},
		{WithMultiplier(0.5), "throttle.WithMultiplier(0.5): K must be a finite number of at least 1"},
		{WithMultiplier(math.NaN()), "throttle.WithMultiplier(NaN): K must be a finite number of at least 1"},
		{WithMultiplier(math.Inf(1)), "throttle.WithMultiplier(+Inf): K must be a finite number of at least 1"},
		{WithMaxProbability(0), ""},
		{WithMaxProbability(1), ""},
		{WithMaxProbability(1.5), "throttle.WithMaxProbability(1.5): must be between 0 and 1"},
		{WithMaxProbability(-0.1), "throttle.WithMaxProbability(-0.1): must be between 0 and 1"},
		{WithMaxProbability(math.NaN()), "throttle.WithMaxProbability(NaN): must be between 0 and 1"},
		{WithRand(nil), "throttle.WithRand(nil): a random source is required"},
		{WithMaxTargets(0), "throttle.WithMaxTargets(0): must be at least 1"},
		{WithClock(nil), ""},
		{WithObserver(nil), ""},
		{nil, ""},
	}
	for i, tc := range tests {
		_, err := New(tc.opt)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("option %d: error %q, want %q", i, got, tc.want)
		}
	}
}

func TestObserver(t *testing.T) {
	var events []observe.Event
	obs := observe.Func(func(_ context.Context, e observe.Event) { events = append(events, e) })
	h := newHarness(t, WithObserver(obs), WithRand(fixed(0)))
	h.call(status.Error(codes.ResourceExhausted, "busy")) // p = 1/2 from now on
	if len(events) != 0 {
		t.Fatalf("a sent call is not an event: %+v", events)
	}
	err := h.call(nil)
	if len(events) != 1 {
		t.Fatalf("events: %+v", events)
	}
	e := events[0]
	if e.Kind != observe.Throttled || e.Value != 0.5 || e.Target != "passthrough:///svc" || e.Method != "/svc.v1.S/M" || e.Err != err {
		t.Fatalf("event %+v", e)
	}
}

func TestRegistry(t *testing.T) {
	h := newHarness(t, WithMaxTargets(2), WithRand(fixed(0)))
	unary := h.t.UnaryClientInterceptor()
	shed := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.ResourceExhausted, "busy")
	}
	call := func(cc *grpc.ClientConn) error { return unary(context.Background(), "/m", nil, nil, cc, shed) }
	a, b, c := testserver.Dial(t, "passthrough:///a"), testserver.Dial(t, "passthrough:///b"), testserver.Dial(t, "passthrough:///c")
	call(a)
	call(b)
	call(b)
	// Both slots hold refusals: c takes the place of the one used least
	// lately, a, rather than pass unthrottled.
	call(c)
	if s := h.t.State("passthrough:///c"); s.Requests != 1 || s.Probability != 0.5 {
		t.Fatalf("c: %+v, want tracked", s)
	}
	if _, ok := outcome.AsRejection(call(c)); !ok {
		t.Fatal("c is not throttled")
	}
	if s := h.t.State("passthrough:///a"); s != (State{}) {
		t.Fatalf("a still tracked: %+v", s)
	}
	if s := h.t.State("passthrough:///b"); s.Requests != 2 {
		t.Fatalf("b: %+v, want its counts kept", s)
	}
	if got := h.t.targets.Len(); got != 2 {
		t.Fatalf("%d targets tracked, bound 2", got)
	}
	// Two ClientConns to one target share its counts.
	a2 := testserver.Dial(t, "passthrough:///c")
	call(a2)
	if s := h.t.State("passthrough:///c"); s.Requests != 3 {
		t.Fatalf("shared target: %+v", s)
	}
}

func TestConcurrentCountsAreExact(t *testing.T) {
	// The draw is above the cap: the throttle never rejects, whatever
	// order the goroutines' results land in.
	h := newHarness(t, WithRand(fixed(0.95)))
	const goroutines, calls = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				var err error
				if (g+i)%2 == 0 {
					err = status.Error(codes.ResourceExhausted, "busy")
				}
				h.unary(context.Background(), "/m", nil, nil, h.cc,
					func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return err })
				_ = h.t.State(h.cc.Target())
			}
		})
	}
	wg.Wait()
	if s := h.state(); s.Requests != goroutines*calls || s.Accepts != goroutines*calls/2 {
		t.Fatalf("state %+v, want %d requests and %d accepts", s, goroutines*calls, goroutines*calls/2)
	}
}

// fakeStream is a ClientStream whose RecvMsg returns results in order.
type fakeStream struct {
	grpc.ClientStream
	results []error
}

func (s *fakeStream) RecvMsg(any) error {
	if len(s.results) == 0 {
		return io.EOF
	}
	err := s.results[0]
	s.results = s.results[1:]
	return err
}

func TestStream(t *testing.T) {
	overload := status.Error(codes.ResourceExhausted, "busy")
	serverStream := &grpc.StreamDesc{ServerStreams: true}
	clientStream := &grpc.StreamDesc{ClientStreams: true}
	tests := []struct {
		name             string
		desc             *grpc.StreamDesc
		openErr          error
		recv             []error // what RecvMsg returns, in order, until the caller stops
		calls            int     // RecvMsg calls the caller makes
		wantReq, wantAcc uint64
	}{
		{"server stream ends OK", serverStream, nil, []error{nil, nil, io.EOF}, 3, 1, 1},
		{"counted once", serverStream, nil, []error{io.EOF, io.EOF}, 2, 1, 1},
		{"server stream overloaded", serverStream, nil, []error{nil, overload}, 2, 1, 0},
		{"failure after messages", serverStream, nil, []error{nil, status.Error(codes.Internal, "x")}, 2, 1, 1},
		{"overload after messages", serverStream, nil, []error{nil, nil, overload}, 3, 1, 0},
		{"caller cancelled", serverStream, nil, []error{status.Error(codes.Canceled, "x")}, 1, 1, 1},
		{"abandoned before its end", serverStream, nil, []error{nil, nil}, 1, 0, 0},
		{"client stream response", clientStream, nil, []error{nil}, 1, 1, 1},
		{"client stream overloaded", clientStream, nil, []error{overload}, 1, 1, 0},
		{"open failed", serverStream, overload, nil, 0, 1, 0},
		{"open rejected by an inner layer", serverStream, &outcome.Rejection{Layer: "bulkhead", Code: codes.ResourceExhausted}, nil, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			intercept := h.t.StreamClientInterceptor()
			streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
				if tc.openErr != nil {
					return nil, tc.openErr
				}
				return &fakeStream{results: append([]error(nil), tc.recv...)}, nil
			}
			cs, err := intercept(context.Background(), tc.desc, h.cc, "/svc.v1.S/Stream", streamer)
			if err != tc.openErr {
				t.Fatalf("open: %v, want %v", err, tc.openErr)
			}
			for i := range tc.calls {
				if got := cs.RecvMsg(nil); got != tc.recv[i] {
					t.Fatalf("RecvMsg %d = %v, want %v", i, got, tc.recv[i])
				}
			}
			if s := h.state(); s.Requests != tc.wantReq || s.Accepts != tc.wantAcc {
				t.Fatalf("counted %d requests, %d accepts; want %d, %d", s.Requests, s.Accepts, tc.wantReq, tc.wantAcc)
			}
		})
	}
}

func TestStreamRejected(t *testing.T) {
	h := newHarness(t, WithRand(fixed(0)))
	h.call(status.Error(codes.ResourceExhausted, "busy"))
	opened := false
	cs, err := h.t.StreamClientInterceptor()(context.Background(), &grpc.StreamDesc{ServerStreams: true}, h.cc, "/svc.v1.S/Stream",
		func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
			opened = true
			return nil, nil
		})
	if cs != nil || opened || status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "failsoft: throttle: ") {
		t.Fatalf("stream %v opened %v err %v", cs, opened, err)
	}
	if s := h.state(); s.Requests != 2 || s.Accepts != 0 {
		t.Fatalf("state %+v", s)
	}
}

func TestNilClientConn(t *testing.T) {
	th, err := New()
	if err != nil {
		t.Fatal(err)
	}
	err = th.UnaryClientInterceptor()(context.Background(), "/m", nil, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
	if err != nil || th.State("").Requests != 1 {
		t.Fatalf("err %v, state %+v", err, th.State(""))
	}
}

// TestLongCall: a call is counted when it ends, in the bucket it started
// in, so one that outlives the window is not counted.
func TestLongCall(t *testing.T) {
	h := newHarness(t)
	call := func(d time.Duration) {
		h.unary(context.Background(), "/m", nil, nil, h.cc,
			func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				h.clk.Advance(d)
				return status.Error(codes.ResourceExhausted, "busy")
			})
	}
	call(30 * time.Second) // from 0 s to 30 s
	if s := h.state(); s.Requests != 1 || s.Accepts != 0 {
		t.Fatalf("state %+v", s)
	}
	h.clk.Advance(90 * time.Second) // 120 s: the call's bucket leaves the window
	if s := h.state(); s.Requests != 0 {
		t.Fatalf("state %+v", s)
	}
	call(DefaultWindow) // from 120 s to 240 s
	if s := h.state(); s.Requests != 0 {
		t.Fatalf("a call longer than the window: state %+v", s)
	}
}

// TestStress: calls from many goroutines while the clock moves across
// buckets and windows; under -race this checks the lock-free counting, and
// no call is ever counted twice.
func TestStress(t *testing.T) {
	h := newHarness(t, WithWindow(time.Second, 4), WithRand(fixed(0.5)))
	const goroutines, calls = 6, 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				h.clk.Advance(10 * time.Millisecond)
				h.t.State(h.cc.Target())
			}
		}
	})
	var sent sync.WaitGroup
	for g := range goroutines {
		sent.Go(func() {
			cc := h.cc
			if g%2 == 1 {
				cc = nil // a second target
			}
			for i := range calls {
				h.unary(context.Background(), "/m", nil, nil, cc,
					func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
						if i%3 == 0 {
							return nil
						}
						return status.Error(codes.ResourceExhausted, "busy")
					})
			}
		})
	}
	sent.Wait()
	close(stop)
	wg.Wait()
	for _, target := range []string{h.cc.Target(), ""} {
		if s := h.t.State(target); s.Requests > goroutines/2*calls || s.Accepts > s.Requests {
			t.Fatalf("%q: state %+v after %d calls", target, s, goroutines/2*calls)
		}
	}
}

// TestDeadTarget: a target that cannot be reached is the breaker's
// business; the throttle leaves it alone.
func TestDeadTarget(t *testing.T) {
	down := status.Error(codes.Unavailable, "connection refused")
	for _, rejects := range []bool{false, true} {
		h := newHarness(t, WithFailuresAsRejects(rejects), WithRand(rand.New(rand.NewPCG(5, 6)).Float64))
		for range 100 {
			h.call(down)
		}
		if s := h.state(); h.sent != 100 || s.Probability != 0 {
			t.Fatalf("failures as rejects %v: %d of 100 calls sent, state %+v", rejects, h.sent, s)
		}
	}
}

// TestFailuresOfAnsweringTarget: the failures of a target that did the
// work of a call sent within the last second count as refusals (by
// default), whatever their code, once the window holds 20 requests; older
// answers do not make it answering.
func TestFailuresOfAnsweringTarget(t *testing.T) {
	down := status.Error(codes.Unavailable, "overloaded")
	tests := []struct {
		name     string
		opts     []Option
		gap      time.Duration // between the accepts and the failure
		accepts  int
		wantMiss bool
	}{
		{"at once", nil, 0, 20, true},
		{"within a second", nil, time.Second - time.Nanosecond, 20, true},
		{"a second later", nil, time.Second, 20, false},
		{"too few calls to tell", nil, 0, 19, false},
		{"failures as accepts", []Option{WithFailuresAsRejects(false)}, 0, 20, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, append([]Option{WithRand(fixed(0.99))}, tc.opts...)...)
			for range tc.accepts {
				h.call(nil)
			}
			h.clk.Advance(tc.gap)
			h.call(down)
			s := h.state()
			if missed := s.Requests != s.Accepts; missed != tc.wantMiss {
				t.Fatalf("state %+v: failure counted as a refusal %v, want %v", s, missed, tc.wantMiss)
			}
		})
	}
}

// TestAllAccepted: admit skips summing the buckets only while no request
// in the window went without its accept.
func TestAllAccepted(t *testing.T) {
	r := newRing(10)
	r.add(3, true)
	if !r.allAccepted(3) {
		t.Error("accepted requests only: allAccepted = false")
	}
	r.add(5, false)
	for _, tc := range []struct {
		idx  uint64
		want bool
	}{
		{4, false},  // a reader whose clock is behind the miss: sum
		{5, false},  // the miss's own bucket
		{14, false}, // the miss is still in the window
		{15, true},  // the window has moved past it
	} {
		if got := r.allAccepted(tc.idx); got != tc.want {
			t.Errorf("allAccepted(%d) = %v, want %v", tc.idx, got, tc.want)
		}
	}
	r.add(4, false) // an older miss does not move the mark back
	if r.allAccepted(14) || !r.allAccepted(15) {
		t.Error("an older miss moved the mark")
	}
}
