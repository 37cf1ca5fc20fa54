package outlier

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// fakeSubConn stands for a connection to one endpoint.
type fakeSubConn struct {
	balancer.SubConn
	name string
}

// endpointSubConns returns a SubConn for each named endpoint of d, as the
// balancer gives the child.
func endpointSubConns(d *detector, names ...string) []balancer.SubConn {
	var out []balancer.SubConn
	for _, k := range names {
		out = append(out, &subConn{SubConn: &fakeSubConn{name: k}, e: d.endpoint(k)})
	}
	return out
}

// nameOf names the endpoint of sc, as the child or grpc-go sees it.
func nameOf(sc balancer.SubConn) string {
	if w, ok := sc.(*subConn); ok {
		sc = w.SubConn
	}
	return sc.(*fakeSubConn).name
}

// cycle is a round-robin child picker that counts the Done calls of each
// SubConn it picked.
type cycle struct {
	subConns []balancer.SubConn
	next     int
	done     map[string][]balancer.DoneInfo
	err      error
	noDone   bool // return no Done, as round_robin does
}

func (c *cycle) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	if c.err != nil {
		return balancer.PickResult{}, c.err
	}
	sc := c.subConns[c.next%len(c.subConns)]
	c.next++
	if c.noDone {
		return balancer.PickResult{SubConn: sc}, nil
	}
	name := nameOf(sc)
	return balancer.PickResult{SubConn: sc, Done: func(info balancer.DoneInfo) {
		c.done[name] = append(c.done[name], info)
	}}, nil
}

func TestPicker(t *testing.T) {
	unavailable := balancer.DoneInfo{Err: status.Error(codes.Unavailable, "down")}
	tests := []struct {
		name string
		// ejected endpoints before the picks.
		ejected []string
		picks   int
		// want is the endpoint of each pick.
		want []string
		// discarded is how many of the child's picks of each endpoint
		// were skipped, and so done with an empty DoneInfo.
		discarded map[string]int
	}{
		{"none ejected", nil, 6, []string{"a", "b", "c", "a", "b", "c"}, nil},
		{"one ejected is skipped", []string{"b"}, 4, []string{"a", "c", "a", "c"}, map[string]int{"b": 2}},
		{"two ejected", []string{"a", "b"}, 2, []string{"c", "c"}, map[string]int{"a": 2, "b": 2}},
		// The detector never ejects them all; if it ever did, calls go on.
		{"all ejected: the last pick is used", []string{"a", "b", "c"}, 1, []string{"a"}, map[string]int{"a": 1, "b": 1, "c": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1000, 0))
			cfg := DefaultConfig()
			cfg.MaxEjectionPercent = 100
			d := newDetector(cfg, clk)
			d.update(cfg, []string{"a", "b", "c", "d"})
			child := &cycle{subConns: endpointSubConns(d, "a", "b", "c"), done: map[string][]balancer.DoneInfo{}}
			p := &picker{child: child, d: d, n: 3}
			for _, k := range tc.ejected {
				d.endpoint(k).ejectedUntil.Store(clk.Now().Add(time.Minute).UnixNano())
			}
			var got []string
			for range tc.picks {
				res, err := p.Pick(balancer.PickInfo{})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, res.SubConn.(*fakeSubConn).name)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("picked %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("picked %q, want %q", got, tc.want)
				}
			}
			for _, k := range []string{"a", "b", "c"} {
				if n := len(child.done[k]); n != tc.discarded[k] {
					t.Errorf("%s: child's Done called %d times for skipped picks, want %d", k, n, tc.discarded[k])
				}
			}
		})
	}

	t.Run("done reports the outcome and calls the child's Done", func(t *testing.T) {
		clk := clock.NewFake(time.Unix(1000, 0))
		cfg := DefaultConfig()
		d := newDetector(cfg, clk)
		d.update(cfg, []string{"a", "b", "c"})
		child := &cycle{subConns: endpointSubConns(d, "a"), done: map[string][]balancer.DoneInfo{}}
		p := &picker{child: child, d: d, n: 1}
		// Its siblings do better, as ejection for failures needs.
		for range cfg.ConsecutiveFailures {
			d.record(d.endpoint("b"), outcome.Success, clk.Now(), 0)
		}
		for i := range cfg.ConsecutiveFailures {
			res, err := p.Pick(balancer.PickInfo{})
			if err != nil {
				t.Fatal(err)
			}
			clk.Advance(3 * time.Millisecond)
			res.Done(unavailable)
			if got := d.endpoint("a").ejected(clk.Now()); got != (i == cfg.ConsecutiveFailures-1) {
				t.Fatalf("after %d failures: ejected %v", i+1, got)
			}
		}
		if n := len(child.done["a"]); n != cfg.ConsecutiveFailures || child.done["a"][0].Err != unavailable.Err {
			t.Fatalf("child's Done got %v, want the %d outcomes", child.done["a"], cfg.ConsecutiveFailures)
		}
		// A success's latency is measured on the clock, from the pick.
		clk.Advance(time.Hour)
		res, _ := p.Pick(balancer.PickInfo{})
		clk.Advance(7 * time.Millisecond)
		res.Done(balancer.DoneInfo{})
		if e := d.endpoint("a"); e.samples != 1 || e.latency[0] != 7*time.Millisecond {
			t.Fatalf("latency samples %v (%d), want one of 7ms", e.latency[:e.samples], e.samples)
		}
	})

	t.Run("a retry moves on from an endpoint whose latest call failed", func(t *testing.T) {
		retry := observe.WithAttempt(context.Background(), observe.Attempt{N: 2})
		tests := []struct {
			name string
			ctx  context.Context
			// outcome of each endpoint's latest call, in order.
			latest map[string]outcome.Class
			want   []string
		}{
			{"a first attempt goes where the child says", context.Background(),
				map[string]outcome.Class{"a": outcome.Failure}, []string{"a", "b", "c", "a"}},
			{"a retry skips a failed endpoint", retry,
				map[string]outcome.Class{"a": outcome.Failure}, []string{"b", "c", "b", "c"}},
			{"and one that shed it", retry,
				map[string]outcome.Class{"b": outcome.Overload}, []string{"a", "c", "a", "c"}},
			{"a success clears it", retry,
				map[string]outcome.Class{"a": outcome.Success}, []string{"a", "b", "c", "a"}},
			{"the caller's own errors say nothing", retry,
				map[string]outcome.Class{"a": outcome.Ignored}, []string{"a", "b", "c", "a"}},
			{"all failed: the last pick is used", retry,
				map[string]outcome.Class{"a": outcome.Failure, "b": outcome.Failure, "c": outcome.Failure}, []string{"a", "b"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				clk := clock.NewFake(time.Unix(1000, 0))
				d := newDetector(DefaultConfig(), clk)
				d.update(DefaultConfig(), []string{"a", "b", "c"})
				for k, class := range tc.latest {
					if class == outcome.Success {
						d.record(d.endpoint(k), outcome.Failure, clk.Now(), 0)
					}
					d.record(d.endpoint(k), class, clk.Now(), 0)
				}
				child := &cycle{subConns: endpointSubConns(d, "a", "b", "c"), noDone: true}
				p := &picker{child: child, d: d, n: 3}
				var got []string
				for range tc.want {
					res, err := p.Pick(balancer.PickInfo{Ctx: tc.ctx})
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, res.SubConn.(*fakeSubConn).name)
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("picked %q, want %q", got, tc.want)
				}
			})
		}
	})

	t.Run("errors and unknown SubConns pass through", func(t *testing.T) {
		d := newDetector(DefaultConfig(), clock.NewFake(time.Unix(0, 0)))
		want := errors.New("no SubConn ready")
		p := &picker{child: &cycle{err: want}, d: d}
		if _, err := p.Pick(balancer.PickInfo{}); err != want {
			t.Fatalf("Pick error %v, want the child's", err)
		}
		stranger := &fakeSubConn{name: "x"}
		noEndpoint := &fakeSubConn{name: "y"}
		child := &cycle{subConns: []balancer.SubConn{stranger, &subConn{SubConn: noEndpoint}}, done: map[string][]balancer.DoneInfo{}}
		p = &picker{child: child, d: d}
		for _, want := range []*fakeSubConn{stranger, noEndpoint} {
			res, err := p.Pick(balancer.PickInfo{})
			if err != nil || res.SubConn != want {
				t.Fatalf("Pick = %v, %v, want %s", res, err, want.name)
			}
			res.Done(balancer.DoneInfo{})
			if len(child.done[want.name]) != 1 {
				t.Fatal("the child's Done must be the one returned")
			}
		}
	})
}

func TestClassify(t *testing.T) {
	retryInfo, err := status.New(codes.Unavailable, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	noDelay, err := status.New(codes.Unavailable, "busy").WithDetails(&errdetails.RetryInfo{})
	if err != nil {
		t.Fatal(err)
	}
	otherDetail, err := status.New(codes.Unavailable, "down").WithDetails(&errdetails.ErrorInfo{Reason: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		info balancer.DoneInfo
		want outcome.Class
	}{
		{"ok", balancer.DoneInfo{}, outcome.Success},
		{"unavailable", balancer.DoneInfo{Err: status.Error(codes.Unavailable, "")}, outcome.Failure},
		{"internal", balancer.DoneInfo{Err: status.Error(codes.Internal, "")}, outcome.Failure},
		{"unknown", balancer.DoneInfo{Err: status.Error(codes.Unknown, "")}, outcome.Failure},
		{"deadline", balancer.DoneInfo{Err: status.Error(codes.DeadlineExceeded, "")}, outcome.Failure},
		{"invalid argument", balancer.DoneInfo{Err: status.Error(codes.InvalidArgument, "")}, outcome.Ignored},
		{"not found", balancer.DoneInfo{Err: status.Error(codes.NotFound, "")}, outcome.Ignored},
		{"cancelled", balancer.DoneInfo{Err: status.Error(codes.Canceled, "")}, outcome.Ignored},
		{"resource exhausted", balancer.DoneInfo{Err: status.Error(codes.ResourceExhausted, "")}, outcome.Overload},
		{"unavailable with pushback", balancer.DoneInfo{
			Err:     status.Error(codes.Unavailable, ""),
			Trailer: metadata.Pairs("grpc-retry-pushback-ms", "100"),
		}, outcome.Overload},
		{"unavailable with RetryInfo", balancer.DoneInfo{Err: retryInfo.Err()}, outcome.Overload},
		{"unavailable with a malformed pushback", balancer.DoneInfo{
			Err:     status.Error(codes.Unavailable, ""),
			Trailer: metadata.Pairs("grpc-retry-pushback-ms", "-1"),
		}, outcome.Overload},
		// A RetryInfo without a delay says nothing, as in the retry layer.
		{"unavailable with RetryInfo without a delay", balancer.DoneInfo{Err: noDelay.Err()}, outcome.Failure},
		{"pushback on success", balancer.DoneInfo{Trailer: metadata.Pairs("grpc-retry-pushback-ms", "100")}, outcome.Success},
		{"pushback on a caller's error", balancer.DoneInfo{
			Err:     status.Error(codes.InvalidArgument, ""),
			Trailer: metadata.Pairs("grpc-retry-pushback-ms", "100"),
		}, outcome.Ignored},
		{"unavailable with another detail", balancer.DoneInfo{Err: otherDetail.Err()}, outcome.Failure},
	} {
		if got := classify(tc.info); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// atomicCycle is a round-robin child picker safe for concurrent picks.
type atomicCycle struct {
	subConns []balancer.SubConn
	next     atomic.Uint32
}

func (c *atomicCycle) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: c.subConns[int(c.next.Add(1))%len(c.subConns)]}, nil
}

// TestConcurrentPicks: calls from many goroutines, with time moving on,
// against one always failing endpoint of three (run with -race). The
// share holds at every moment, the failing endpoint is ejected in the
// end, and the healthy ones never are.
func TestConcurrentPicks(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	cfg := DefaultConfig()
	d := newDetector(cfg, clk)
	d.update(cfg, []string{"a", "b", "c"})
	child := &atomicCycle{subConns: endpointSubConns(d, "a", "b", "c")}
	p := &picker{child: child, d: d, n: 3}
	fail := balancer.DoneInfo{Err: status.Error(codes.Unavailable, "down")}
	var wg sync.WaitGroup
	var overShare atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				res, err := p.Pick(balancer.PickInfo{})
				if err != nil {
					t.Error(err)
					return
				}
				if res.SubConn.(*fakeSubConn).name == "a" {
					res.Done(fail)
				} else {
					res.Done(balancer.DoneInfo{})
				}
				ejected := 0
				for _, k := range []string{"a", "b", "c"} {
					if d.endpoint(k).ejected(clk.Now()) {
						ejected++
					}
				}
				if ejected > 1 {
					overShare.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			clk.Advance(250 * time.Millisecond)
		}
	}()
	wg.Wait()
	if n := overShare.Load(); n > 0 {
		t.Fatalf("more than one of three endpoints ejected at %d moments", n)
	}
	// One more failure after the run: on probation or in a run of
	// failures, a ends up ejected; b and c never fail.
	for range cfg.ConsecutiveFailures {
		if res, _ := p.Pick(balancer.PickInfo{}); res.SubConn.(*fakeSubConn).name == "a" {
			res.Done(fail)
		}
	}
	now := clk.Now()
	if !d.endpoint("a").ejected(now) || d.endpoint("b").ejected(now) || d.endpoint("c").ejected(now) {
		t.Fatalf("ejected: a %v, b %v, c %v; want a only", d.endpoint("a").ejected(now), d.endpoint("b").ejected(now), d.endpoint("c").ejected(now))
	}
}
