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
	"google.golang.org/grpc/credentials/insecure"

	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// Config sizes a run. Every loop is bounded by these counts and durations.
type Config struct {
	Params Params
	// Workers is the concurrency of the closed-loop scenarios.
	Workers int
	// Logical calls in each closed-loop scenario.
	OutageCalls, TransientCalls, LostCalls, TailCalls int
	// TransientRate, LostRate, SlowRate are the injected fault rates.
	TransientRate, LostRate, SlowRate float64
	// Slow is the slow tail's latency.
	Slow time.Duration
	// Overload: a server working on Capacity calls at once, each taking
	// Service, offered Load times its capacity for OverloadDuration.
	Capacity         int
	Service          time.Duration
	Load             float64
	OverloadDuration time.Duration
	// OverloadRounds splits OverloadDuration into rounds, run for every
	// chain in turn (a fresh chain and server each round), so that a noisy
	// neighbour on the machine hits a round of every chain rather than the
	// whole run of one.
	OverloadRounds int
	// Seed selects the fault sequence and the arrival times.
	Seed uint64
}

// DefaultConfig is the published run: a few seconds per chain.
func DefaultConfig() Config {
	return Config{
		Params:           DefaultParams(),
		Workers:          8,
		OutageCalls:      200,
		TransientCalls:   1000,
		LostCalls:        1000,
		TailCalls:        1000,
		TransientRate:    0.2,
		LostRate:         0.2,
		SlowRate:         0.05,
		Slow:             200 * time.Millisecond,
		Capacity:         4,
		Service:          10 * time.Millisecond,
		Load:             1.5,
		OverloadDuration: 3 * time.Second,
		OverloadRounds:   3,
		Seed:             1,
	}
}

// env is one server and one client connection through a chain.
type env struct {
	srv    *Server
	conn   *grpc.ClientConn
	client policytestv1.TunedServiceClient
	chain  *Chain
}

func newEnv(spec Spec, p Params, f Faults) (*env, error) {
	chain, err := spec.Build(p)
	if err != nil {
		return nil, err
	}
	dedup, err := serverDedup()
	if err != nil {
		return nil, err
	}
	srv, err := StartServer(f, dedup...)
	if err != nil {
		return nil, err
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, chain.Dial...)
	if len(chain.Unary) > 0 {
		opts = append(opts, grpc.WithChainUnaryInterceptor(chain.Unary...))
	}
	conn, err := grpc.NewClient(srv.Addr(), opts...)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	conn.Connect()
	return &env{srv: srv, conn: conn, client: policytestv1.NewTunedServiceClient(conn), chain: chain}, nil
}

func (e *env) close() {
	_ = e.conn.Close()
	e.srv.Stop()
}

func (e *env) opens() int64 {
	if e.chain.BreakerOpens == nil {
		return -1
	}
	return e.chain.BreakerOpens.Load()
}

// warm makes sure the connection is up before anything is measured. The
// server injects no fault into the warm-up call, and scenarios count
// attempts from after it.
func (e *env) warm(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _ = e.client.Override(ctx, &policytestv1.PingRequest{Payload: warmUpID}, grpc.WaitForReady(true))
}

type callFunc func(ctx context.Context, c policytestv1.TunedServiceClient, id string) error

func callOverride(ctx context.Context, c policytestv1.TunedServiceClient, id string) error {
	_, err := c.Override(ctx, &policytestv1.PingRequest{Payload: id})
	return err
}

func callHedged(ctx context.Context, c policytestv1.TunedServiceClient, id string) error {
	_, err := c.Hedged(ctx, &policytestv1.PingRequest{Payload: id})
	return err
}

func callKeyedWrite(ctx context.Context, c policytestv1.TunedServiceClient, id string) error {
	_, err := c.KeyedWrite(ctx, &policytestv1.PingRequest{Payload: id})
	return err
}

// closedLoop runs n logical calls on workers goroutines, each with the
// caller deadline timeout, and returns the successes and every call's
// latency.
func closedLoop(ctx context.Context, e *env, n, workers int, timeout time.Duration, call callFunc) (ok int, lat []time.Duration) {
	lat = make([]time.Duration, n)
	var next, succ atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				start := time.Now()
				err := call(cctx, e.client, fmt.Sprintf("call-%d", i))
				lat[i] = time.Since(start)
				cancel()
				if err == nil {
					succ.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(succ.Load()), lat
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

// OutageResult: a server that answers every call with UNAVAILABLE.
type OutageResult struct {
	Calls, Attempts int
	Opens           int64
}

func runOutage(ctx context.Context, spec Spec, cfg Config) (OutageResult, error) {
	e, err := newEnv(spec, cfg.Params, Faults{Outage: true, Seed: cfg.Seed})
	if err != nil {
		return OutageResult{}, err
	}
	defer e.close()
	e.warm(ctx)
	before := e.srv.Attempts()
	closedLoop(ctx, e, cfg.OutageCalls, cfg.Workers, cfg.Params.Timeout, callOverride)
	return OutageResult{Calls: cfg.OutageCalls, Attempts: int(e.srv.Attempts() - before), Opens: e.opens()}, nil
}

// RateResult: successes out of logical calls.
type RateResult struct {
	Calls, OK, Attempts int
	Duplicates          int
	Opens               int64
}

func runTransient(ctx context.Context, spec Spec, cfg Config) (RateResult, error) {
	e, err := newEnv(spec, cfg.Params, Faults{FailRate: cfg.TransientRate, Seed: cfg.Seed})
	if err != nil {
		return RateResult{}, err
	}
	defer e.close()
	e.warm(ctx)
	before := e.srv.Attempts()
	ok, _ := closedLoop(ctx, e, cfg.TransientCalls, cfg.Workers, cfg.Params.Timeout, callOverride)
	return RateResult{Calls: cfg.TransientCalls, OK: ok, Attempts: int(e.srv.Attempts() - before), Opens: e.opens()}, nil
}

func runLost(ctx context.Context, spec Spec, cfg Config) (RateResult, error) {
	e, err := newEnv(spec, cfg.Params, Faults{LostRate: cfg.LostRate, Seed: cfg.Seed})
	if err != nil {
		return RateResult{}, err
	}
	defer e.close()
	e.warm(ctx)
	before := e.srv.Attempts()
	ok, _ := closedLoop(ctx, e, cfg.LostCalls, cfg.Workers, cfg.Params.Timeout, callKeyedWrite)
	_, dups := e.srv.Ledger()
	return RateResult{Calls: cfg.LostCalls, OK: ok, Attempts: int(e.srv.Attempts() - before), Duplicates: dups, Opens: e.opens()}, nil
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
	ok, lat := closedLoop(ctx, e, cfg.TailCalls, cfg.Workers, p.Timeout, callHedged)
	return TailResult{Calls: cfg.TailCalls, OK: ok, P50: quantile(lat, 0.5), P99: quantile(lat, 0.99), Hedged: e.chain.Hedges}, nil
}

// OverloadResult: an open-loop client offering more than a server can take.
type OverloadResult struct {
	Offered  int           // logical calls sent
	Window   time.Duration // time over which they were offered
	OK       int           // logical calls that succeeded
	Attempts int           // calls that reached the server
	Opens    int64
	// Capacity is the server's capacity in calls per second.
	Capacity float64
}

// Goodput is successful logical calls per second.
func (r OverloadResult) Goodput() float64 { return float64(r.OK) / r.Window.Seconds() }

// AttemptRate is calls reaching the server per second.
func (r OverloadResult) AttemptRate() float64 { return float64(r.Attempts) / r.Window.Seconds() }

// Amplification is calls reaching the server per logical call offered.
func (r OverloadResult) Amplification() float64 {
	return float64(r.Attempts) / float64(max(1, r.Offered))
}

// add accumulates another round of the same chain.
func (r *OverloadResult) add(o OverloadResult) {
	r.Offered += o.Offered
	r.Window += o.Window
	r.OK += o.OK
	r.Attempts += o.Attempts
	if r.Opens >= 0 {
		r.Opens += o.Opens
	}
	r.Capacity = o.Capacity
}

func runOverload(ctx context.Context, spec Spec, cfg Config) (OverloadResult, error) {
	e, err := newEnv(spec, cfg.Params, Faults{Capacity: cfg.Capacity, Service: cfg.Service, Seed: cfg.Seed})
	if err != nil {
		return OverloadResult{}, err
	}
	defer e.close()
	e.warm(ctx)
	capacity := float64(cfg.Capacity) / cfg.Service.Seconds()
	rate := cfg.Load * capacity
	n := int(rate * cfg.OverloadDuration.Seconds())
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6f7665726c6f6164))
	before := e.srv.Attempts()
	var succ atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	var at time.Duration
	for i := range n {
		// Poisson arrivals: exponential gaps with mean 1/rate.
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if d := time.Until(start.Add(at)); d > 0 {
			if sleep(ctx, d) != nil {
				break
			}
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, cfg.Params.Timeout)
			defer cancel()
			if callOverride(cctx, e.client, fmt.Sprintf("load-%d", i)) == nil {
				succ.Add(1)
			}
		})
	}
	window := time.Since(start)
	wg.Wait()
	return OverloadResult{
		Offered:  n,
		Window:   window,
		OK:       int(succ.Load()),
		Attempts: int(e.srv.Attempts() - before),
		Opens:    e.opens(),
		Capacity: capacity,
	}, nil
}
