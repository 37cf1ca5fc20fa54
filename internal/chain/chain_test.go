package chain

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/policy"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
	_ "github.com/failsoft/failsoft/proto/failsoft/policytest/v1" // the services resolved
)

// recorder is a layer that notes its name and what it saw, and runs a hook
// on the State it passes on.
type recorder struct {
	name string
	log  *[]string
	edit func(*State)
	seen *State
}

func (r recorder) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next UnaryNext, opts ...grpc.CallOption) error {
	*r.log = append(*r.log, r.name)
	if r.seen != nil {
		*r.seen = next.State
	}
	if r.edit != nil {
		r.edit(&next.State)
	}
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

func (r recorder) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	*r.log = append(*r.log, r.name)
	if r.seen != nil {
		*r.seen = next.State
	}
	if r.edit != nil {
		r.edit(&next.State)
	}
	return next.NewStream(ctx, desc, cc, method, opts...)
}

type marker struct{ grpc.EmptyCallOption }

func TestOrderAndArguments(t *testing.T) {
	var log []string
	layers := []Unary{recorder{name: "a", log: &log}, recorder{name: "b", log: &log}, recorder{name: "c", log: &log}}
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	wantErr := errors.New("from the invoker")
	final := func(gctx context.Context, method string, req, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		log = append(log, "final")
		if gctx.Value(key{}) != "v" || method != "/s/m" || req != "req" || reply != "reply" || len(opts) != 1 {
			t.Errorf("final got ctx value %v, method %q, req %v, reply %v, %d opts", gctx.Value(key{}), method, req, reply, len(opts))
		}
		return wantErr
	}
	err := NewUnaries(layers...).Start(final).Invoke(ctx, "/s/m", "req", "reply", nil, marker{})
	if err != wantErr {
		t.Errorf("Invoke returned %v, want the invoker's error", err)
	}
	if want := []string{"a", "b", "c", "final"}; !slices.Equal(log, want) {
		t.Errorf("ran %v, want %v", log, want)
	}

	log = nil
	streamErr := errors.New("from the streamer")
	sfinal := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		log = append(log, "final")
		return nil, streamErr
	}
	slayers := []Stream{recorder{name: "a", log: &log}, recorder{name: "b", log: &log}}
	if _, err := NewStreams(slayers...).Start(sfinal).NewStream(ctx, &grpc.StreamDesc{}, nil, "/s/m"); err != streamErr {
		t.Errorf("NewStream returned %v, want the streamer's error", err)
	}
	if want := []string{"a", "b", "final"}; !slices.Equal(log, want) {
		t.Errorf("ran %v, want %v", log, want)
	}
}

// TestStateFlowsInward: what a layer puts in State reaches the layers
// inside it, and never an outer layer's later calls (a retry layer sends
// each attempt with the State it was given).
func TestStateFlowsInward(t *testing.T) {
	var log []string
	var inner1 State
	r, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	p := &policy.Policy{}
	twice := retryTwice{}
	layers := []Unary{
		recorder{name: "outer", log: &log, edit: func(s *State) { s.Resolver, s.Policy = r, p }},
		twice,
		recorder{name: "attempt", log: &log, edit: func(s *State) { s.MayRetry = true }},
		recorder{name: "inner", log: &log, seen: &inner1},
	}
	final := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	if err := NewUnaries(layers...).Start(final).Invoke(context.Background(), "/s/m", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if inner1.Policy != p || inner1.Resolver != r || !inner1.MayRetry {
		t.Errorf("inner layer saw %+v, want the outer layers' policy and first attempt", inner1)
	}
	if want := []string{"outer", "attempt", "inner", "attempt", "inner"}; !slices.Equal(log, want) {
		t.Errorf("ran %v, want %v", log, want)
	}
}

// retryTwice sends the rest of the chain twice and checks that the first
// pass changed nothing in its own State.
type retryTwice struct{}

func (retryTwice) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next UnaryNext, opts ...grpc.CallOption) error {
	before := next.State
	if err := next.Invoke(ctx, method, req, reply, cc, opts...); err != nil {
		return err
	}
	if next.State != before {
		return errors.New("an inner layer changed an outer layer's State")
	}
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

func (retryTwice) Stream(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, StreamNext, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("unused")
}

func TestPendingDeadline(t *testing.T) {
	pending := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name     string
		caller   time.Duration // 0: none
		pending  bool
		want     time.Time
		wantSome bool
	}{
		{name: "none", wantSome: false},
		{name: "pending only", pending: true, want: pending, wantSome: true},
		{name: "earlier caller deadline wins", caller: time.Minute, pending: true, wantSome: true},
		{name: "later caller deadline loses", caller: 2 * time.Hour, pending: true, want: pending, wantSome: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var callerDL time.Time
			if tc.caller > 0 {
				var cancel context.CancelFunc
				callerDL = time.Now().Add(tc.caller)
				ctx, cancel = context.WithDeadline(ctx, callerDL)
				defer cancel()
			}
			want := tc.want
			if want.IsZero() {
				want = callerDL
			}
			var got context.Context
			setter := recorder{name: "deadline", log: new([]string), edit: func(s *State) {
				if tc.pending {
					s.Deadline = pending
				}
			}}
			var between State
			check := layerFunc(func(ctx context.Context, next UnaryNext) error {
				between = next.State
				d, ok := next.DeadlineOf(ctx)
				if ok != tc.wantSome || !d.Equal(want) {
					t.Errorf("DeadlineOf = %v, %v; want %v, %v", d, ok, want, tc.wantSome)
				}
				return next.Invoke(ctx, "/s/m", nil, nil, nil)
			})
			final := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				got = ctx
				d, ok := ctx.Deadline()
				if ok != tc.wantSome || !d.Equal(want) {
					t.Errorf("the invoker's context has deadline %v, %v; want %v, %v", d, ok, want, tc.wantSome)
				}
				return nil
			}
			if err := NewUnaries(setter, check).Start(final).Invoke(ctx, "/s/m", nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			if tc.pending && between.Deadline.IsZero() {
				t.Error("the pending deadline did not reach the layer inside")
			}
			if tc.pending && want.Equal(pending) && got.Err() == nil {
				t.Error("the context made for the pending deadline was not released when the call returned")
			}
		})
	}
}

type layerFunc func(ctx context.Context, next UnaryNext) error

func (f layerFunc) Unary(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, next UnaryNext, _ ...grpc.CallOption) error {
	return f(ctx, next)
}

func TestApplyDeadline(t *testing.T) {
	var s State
	ctx, cancel := s.ApplyDeadline(context.Background())
	if _, ok := ctx.Deadline(); ok || cancel == nil {
		t.Fatal("ApplyDeadline without a pending deadline changed the context or gave no cancel function")
	}
	cancel()
	d := time.Now().Add(time.Minute)
	s.Deadline = d
	ctx, cancel = s.ApplyDeadline(context.Background())
	defer cancel()
	if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
		t.Errorf("deadline %v, %v; want %v", got, ok, d)
	}
	if !s.Deadline.Equal(d) {
		t.Error("ApplyDeadline changed State: its Deadline has one writer, the deadline layer")
	}
	earlier, cancel2 := context.WithDeadline(context.Background(), d.Add(-time.Second))
	defer cancel2()
	if got, _ := s.ApplyDeadline(earlier); got != earlier {
		t.Error("ApplyDeadline made a context for a deadline the context already beats")
	}
}

func TestResolveReusesOnlySameResolver(t *testing.T) {
	r1, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	const method = "/failsoft.policytest.v1.PlainService/Idempotent"
	var s State
	p1, err := s.Resolve(r1, method)
	if err != nil {
		t.Fatal(err)
	}
	if s.Policy != p1 || s.Resolver != r1 {
		t.Fatal("Resolve did not keep the policy")
	}
	marker := &policy.Policy{}
	s.Policy = marker
	if p, _ := s.Resolve(r1, method); p != marker {
		t.Error("Resolve with the same resolver did not reuse the kept policy")
	}
	if p, _ := s.Resolve(r2, method); p == marker {
		t.Error("Resolve with another resolver reused a policy it did not resolve")
	}
	var fresh State
	if _, err := fresh.Resolve(r1, brokenv1.BrokenService_ZeroTimeout_FullMethodName); err == nil {
		t.Error("Resolve of a method with invalid options: no error")
	} else if fresh.Policy != nil {
		t.Error("Resolve kept a policy after an error")
	}
}

type thing struct{ name string }

// forget removes kind from the registry when the test ends, so that the
// test can run again in the same process (go test -count).
func forget(t *testing.T, kinds ...Kind) {
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range kinds {
			delete(registry, k)
		}
	})
}

func TestLookup(t *testing.T) {
	const kind Kind = "test layer"
	const idle, half Kind = "idle layer", "half layer"
	forget(t, kind, idle, half)
	if _, err := Lookup(kind, &thing{}); err == nil || !strings.Contains(err.Error(), `no layer of kind "test layer" registered`) {
		t.Errorf("Lookup of an unregistered kind: %v", err)
	}
	var log []string
	Register(kind, func(th *thing) Layer {
		r := recorder{name: th.name, log: &log}
		return Layer{Unary: r, Stream: r}
	})
	l, err := Lookup(kind, &thing{name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := l.Unary.(recorder); !ok || r.name != "x" {
		t.Errorf("Lookup returned %#v", l.Unary)
	}
	if _, err := Lookup(kind, "not a thing"); err == nil || !strings.Contains(err.Error(), `string is not a layer of kind "test layer"`) {
		t.Errorf("Lookup with a value of the wrong type: %v", err)
	}

	Register(idle, func(*thing) Layer { return Layer{} })
	if l, err := Lookup(idle, &thing{}); err != nil || !l.Empty() {
		t.Errorf("a layer with nothing to do: %v, %v; want the empty layer", l, err)
	}
	nop := func(context.Context, string, any, any, *grpc.ClientConn, grpc.UnaryInvoker, ...grpc.CallOption) error {
		return nil
	}
	for _, tc := range []struct {
		name  string
		layer Layer
		ok    bool
	}{
		{"unary half only", Layer{Unary: recorder{}}, false},
		{"stream half only", Layer{Stream: recorder{}}, false},
		{"innermost unary half and stream half", Layer{UnaryInnermost: nop, Stream: recorder{}}, true},
		{"innermost unary half only", Layer{UnaryInnermost: nop}, false},
		{"two unary halves", Layer{Unary: recorder{}, UnaryInnermost: nop, Stream: recorder{}}, false},
	} {
		Register(half, func(*thing) Layer { return tc.layer })
		l, err := Lookup(half, &thing{})
		if (err == nil) != tc.ok {
			t.Errorf("%s: Lookup error %v, want ok %v", tc.name, err, tc.ok)
		}
		if err == nil && l.Empty() {
			t.Errorf("%s: Lookup returned the empty layer", tc.name)
		}
	}
}

// TestInside: the innermost interceptor runs inside every layer, around
// the final invoker, with the pending deadline set on its context.
func TestInside(t *testing.T) {
	pending := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name    string
		pending bool
	}{
		{"no pending deadline", false},
		{"pending deadline", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			outer := recorder{name: "outer", log: &log, edit: func(s *State) {
				if tc.pending {
					s.Deadline = pending
				}
			}}
			wantErr := errors.New("marked")
			innermost := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				log = append(log, "innermost")
				if d, ok := ctx.Deadline(); ok != tc.pending || (ok && !d.Equal(pending)) {
					t.Errorf("the innermost interceptor's context has deadline %v, %v; want pending %v", d, ok, tc.pending)
				}
				if method != "/s/m" || req != "req" || reply != "reply" || len(opts) != 1 {
					t.Errorf("innermost got method %q, req %v, reply %v, %d opts", method, req, reply, len(opts))
				}
				if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
					return wantErr
				}
				return nil
			}
			final := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				log = append(log, "final")
				return errors.New("from the invoker")
			}
			err := NewUnaries(outer, recorder{name: "inner", log: &log}).Inside(innermost).Start(final).Invoke(context.Background(), "/s/m", "req", "reply", nil, marker{})
			if err != wantErr {
				t.Errorf("Invoke returned %v, want the innermost interceptor's", err)
			}
			if want := []string{"outer", "inner", "innermost", "final"}; !slices.Equal(log, want) {
				t.Errorf("ran %v, want %v", log, want)
			}
		})
	}
}

func TestInterceptors(t *testing.T) {
	var log []string
	r := recorder{name: "only", log: &log}
	u, s := UnaryInterceptor(r), StreamInterceptor(r)
	invoked := false
	err := u(context.Background(), "/s/m", nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		invoked = true
		return nil
	})
	if err != nil || !invoked {
		t.Errorf("unary interceptor: err %v, invoked %v", err, invoked)
	}
	streamed := false
	_, err = s(context.Background(), &grpc.StreamDesc{}, nil, "/s/m", func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		streamed = true
		return nil, nil
	})
	if err != nil || !streamed {
		t.Errorf("stream interceptor: err %v, streamed %v", err, streamed)
	}
}

func TestMark(t *testing.T) {
	own := []grpc.CallOption{grpc.WaitForReady(true), marker{}}
	for _, tc := range []struct {
		name string
		opts []grpc.CallOption
		ok   bool
		want int // options returned
	}{
		{"none", nil, true, 1},
		{"generated code's StaticMethod", []grpc.CallOption{grpc.StaticMethod()}, true, 2},
		{"a caller's own", own[:1], true, 2},
		{"a caller's own and StaticMethod", []grpc.CallOption{grpc.StaticMethod(), grpc.WaitForReady(true)}, true, 3},
	} {
		got, ok := Mark(tc.opts)
		if ok != tc.ok || len(got) != tc.want {
			t.Errorf("%s: Mark gave %d options, ok %v; want %d, %v", tc.name, len(got), ok, tc.want, tc.ok)
		}
		if _, again := Mark(got); again {
			t.Errorf("%s: marking the marked options again was not refused", tc.name)
		}
	}
	if _, ok := own[1].(marker); !ok {
		t.Error("Mark wrote into the caller's slice")
	}
}
