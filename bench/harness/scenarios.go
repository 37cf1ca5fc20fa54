package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// Config sizes a run. Every loop is bounded by these counts and durations.
type Config struct {
	Params Params
	// Workers is the concurrency of the closed-loop scenarios.
	Workers int
	// Logical calls of the closed-loop scenarios: the failure modes with
	// 20% transient faults, with one bad backend of three (for each of its
	// two faults), with responses lost after commit, and the slow tail.
	TransientCalls, BadBackendCalls, LostCalls, TailCalls int
	// TransientRate, LostRate, SlowRate are the injected fault rates.
	TransientRate, LostRate, SlowRate float64
	// Slow is the slow tail's latency.
	Slow time.Duration
	// Late is how late the slow one of three backends answers.
	Late time.Duration
	// Overload: a server working on Capacity calls at once, each taking
	// Service, offered Load times its capacity for OverloadDuration, once
	// for each way of rejecting the excess (Reject); with pushback it asks
	// for a wait of Pushback.
	Capacity         int
	Service          time.Duration
	Load             float64
	Pushback         time.Duration
	OverloadDuration time.Duration
	// OverloadRounds splits OverloadDuration into rounds, run for every
	// chain in turn (a fresh chain and server each round), so that a noisy
	// neighbour on the machine hits a round of every chain rather than the
	// whole run of one.
	OverloadRounds int
	// Outage and recovery: calls offered at OutageRate per second (Poisson
	// arrivals) to a server that is down for OutageDown and healthy for
	// OutageAfter after it.
	OutageRate              float64
	OutageDown, OutageAfter time.Duration
	// Flakiness: FlakyCalls offered at FlakyCallRate per second, of whose
	// attempts FlakyRate fail with UNAVAILABLE.
	FlakyRate     float64
	FlakyCallRate float64
	FlakyCalls    int
	// Seed selects the fault sequence and the arrival times.
	Seed uint64
}

// DefaultConfig is the published run: a few seconds per chain and
// failure mode.
func DefaultConfig() Config {
	return Config{
		Params:          DefaultParams(),
		Workers:         8,
		TransientCalls:  1000,
		BadBackendCalls: 600,
		// Three attempts leave 0.8% of charges failed although committed
		// (0.2³), 0.2 points inside the 1% goal: 3000 calls put one
		// standard deviation of the measured share at 0.16 points (1000
		// calls: 0.28, wider than the margin).
		LostCalls:        3000,
		TailCalls:        1000,
		TransientRate:    0.2,
		LostRate:         0.2,
		SlowRate:         0.05,
		Slow:             200 * time.Millisecond,
		Late:             50 * time.Millisecond,
		Capacity:         4,
		Service:          10 * time.Millisecond,
		Load:             1.5,
		Pushback:         100 * time.Millisecond,
		OverloadDuration: 3 * time.Second,
		OverloadRounds:   3,
		OutageRate:       250,
		OutageDown:       3 * time.Second,
		OutageAfter:      2 * time.Second,
		FlakyRate:        0.03,
		FlakyCallRate:    1000,
		FlakyCalls:       2000,
		Seed:             1,
	}
}

// env is one client connection through a chain to one server, or to
// several behind round_robin.
type env struct {
	srvs   []*Server
	conn   *grpc.ClientConn
	client policytestv1.TunedServiceClient
	plain  policytestv1.PlainServiceClient
	chain  *Chain
}

// backendsScheme is the resolver scheme that lists an env's servers.
const backendsScheme = "bench-backends"

// newEnv starts one server for each of faults and connects to them
// through spec's chain; with more than one, the connection balances them
// with round_robin, each server an address of one target.
func newEnv(spec Spec, p Params, faults ...Faults) (*env, error) {
	chain, err := spec.Build(p)
	if err != nil {
		return nil, err
	}
	e := &env{chain: chain}
	var addrs []resolver.Address
	for _, f := range faults {
		dedup, err := serverDedup()
		if err != nil {
			e.close()
			return nil, err
		}
		srv, err := StartServer(f, dedup...)
		if err != nil {
			e.close()
			return nil, err
		}
		e.srvs = append(e.srvs, srv)
		addrs = append(addrs, resolver.Address{Addr: srv.Addr()})
	}
	target, opts := e.srvs[0].Addr(), chain.dialOptions(len(faults) > 1)
	if len(faults) > 1 {
		r := manual.NewBuilderWithScheme(backendsScheme)
		r.InitialState(resolver.State{Addresses: addrs})
		target, opts = backendsScheme+":///bench", append(opts, grpc.WithResolvers(r))
	}
	e.conn, err = grpc.NewClient(target, opts...)
	if err != nil {
		e.close()
		return nil, err
	}
	e.conn.Connect()
	e.client = policytestv1.NewTunedServiceClient(e.conn)
	e.plain = policytestv1.NewPlainServiceClient(e.conn)
	return e, nil
}

func (e *env) close() {
	if e.conn != nil {
		_ = e.conn.Close()
	}
	for _, s := range e.srvs {
		s.Stop()
	}
}

// attempts is the number of calls that reached the servers.
func (e *env) attempts() int {
	var n int64
	for _, s := range e.srvs {
		n += s.Attempts()
	}
	return int(n)
}

func (e *env) opens() int64 {
	if e.chain.BreakerOpens == nil {
		return -1
	}
	return e.chain.BreakerOpens.Load()
}

// warm makes sure the connection is up to every server before anything
// is measured: it makes warm-up calls until each server has answered one
// (round_robin sends calls only to the backends it is connected to), at
// most ten per server and for two seconds. The server injects no fault
// into a warm-up call, and scenarios count attempts from after it.
func (e *env) warm(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// round_robin sends only to backends whose connection is ready, and on
	// a busy machine they become ready at different times: keep calling
	// until each has answered, bounded by the timeout and a count.
	for range 1000 * len(e.srvs) {
		if ctx.Err() != nil || !slices.ContainsFunc(e.srvs, func(s *Server) bool { return s.Attempts() == 0 }) {
			return
		}
		_, _ = e.client.Override(ctx, &policytestv1.PingRequest{Payload: warmUpID}, grpc.WaitForReady(true))
	}
}

type callFunc func(ctx context.Context, e *env, id string) error

func callHedged(ctx context.Context, e *env, id string) error {
	_, err := e.client.Hedged(ctx, &policytestv1.PingRequest{Payload: id})
	return err
}

// callRead is an IDEMPOTENT read without failsoft options.
func callRead(ctx context.Context, e *env, id string) error {
	_, err := e.plain.Idempotent(ctx, &policytestv1.PingRequest{Payload: id})
	return err
}

// callCharge is a write under the README's Charge policy.
func callCharge(ctx context.Context, e *env, id string) error {
	_, err := e.plain.Plain(ctx, &policytestv1.PingRequest{Payload: id})
	return err
}

// callID is the id of the i-th logical call of a scenario.
func callID(i int) string { return fmt.Sprintf("call-%d", i) }

// record is one logical call: when it started and ended, from the start of
// its loop, and whether it succeeded. Its id is callID of its index.
type record struct {
	Start, End time.Duration
	OK         bool
}

// succeeded counts the records that succeeded.
func succeeded(rs []record) int {
	n := 0
	for _, r := range rs {
		if r.OK {
			n++
		}
	}
	return n
}

// closedLoop runs n logical calls on workers goroutines, each with the
// caller deadline timeout, and returns a record of each.
func closedLoop(ctx context.Context, e *env, n, workers int, timeout time.Duration, call callFunc) []record {
	recs := make([]record, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				recs[i] = timedCall(ctx, e, start, i, timeout, call)
			}
		})
	}
	wg.Wait()
	return recs[:min(n, int(next.Load()))]
}

// openLoop offers n logical calls at rate per second from start, with
// Poisson arrivals drawn from rng, each with the caller deadline timeout,
// whatever the earlier ones are doing, and returns a record of each call
// it offered and the time over which it offered them.
func openLoop(ctx context.Context, e *env, start time.Time, rate float64, n int, rng *rand.Rand, timeout time.Duration, call callFunc) ([]record, time.Duration) {
	recs := make([]record, n)
	var wg sync.WaitGroup
	var at time.Duration
	offered := 0
	for i := range n {
		// exponential gaps with mean 1/rate
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if d := time.Until(start.Add(at)); d > 0 {
			if sleep(ctx, d) != nil {
				break
			}
		}
		offered++
		wg.Go(func() { recs[i] = timedCall(ctx, e, start, i, timeout, call) })
	}
	window := time.Since(start)
	wg.Wait()
	return recs[:offered], window
}

func timedCall(ctx context.Context, e *env, start time.Time, i int, timeout time.Duration, call callFunc) record {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := record{Start: time.Since(start)}
	err := call(cctx, e, callID(i))
	r.End, r.OK = time.Since(start), err == nil
	return r
}

func latencies(rs []record) []time.Duration {
	lat := make([]time.Duration, len(rs))
	for i, r := range rs {
		lat[i] = r.End - r.Start
	}
	return lat
}

func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// TailResult: latency against a server with a slow tail.
type TailResult struct {
	Calls, OK int
	P50, P99  time.Duration
	Hedged    bool
}

func runTail(ctx context.Context, spec Spec, cfg Config, hedge bool) (TailResult, error) {
	p := cfg.Params
	p.Hedge = hedge
	e, err := newEnv(spec, p, Faults{SlowRate: cfg.SlowRate, Slow: cfg.Slow, Seed: cfg.Seed})
	if err != nil {
		return TailResult{}, err
	}
	defer e.close()
	if hedge && !e.chain.Hedges {
		return TailResult{}, nil
	}
	e.warm(ctx)
	recs := closedLoop(ctx, e, cfg.TailCalls, cfg.Workers, p.Timeout, callHedged)
	lat := latencies(recs)
	return TailResult{Calls: len(recs), OK: succeeded(recs), P50: quantile(lat, 0.5), P99: quantile(lat, 0.99), Hedged: e.chain.Hedges}, nil
}
