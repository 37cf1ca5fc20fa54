// The demo scenario in small: seconds of seeded chaos against a real
// server on 127.0.0.1, a client restart with payments still pending, a
// server restart in the middle of a run, and faults on the client's side. Whatever the timing, the ledger
// must end up with every payment once: no duplicates, none lost, nothing
// left pending.
package demo_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/alerts"
	chaos "github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/demo/internal/checkout"
	"github.com/failsoft/failsoft/demo/internal/metrics"
	"github.com/failsoft/failsoft/demo/internal/payserver"
	libchaos "github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	t          *testing.T
	dir        string
	addr       string
	srv        *payserver.Server
	ledgerPath string
	// noLedgerDedup leaves unary charges to the idempotency interceptor.
	noLedgerDedup bool
	// redis, when set, is the URL of the Redis that keeps the idempotency
	// interceptor's outcomes (the server's -redis flag).
	redis string
	// ch is the chaos of every server incarnation, so that the load can
	// change it while the server restarts.
	ch *libchaos.Injector
}

// setChaos switches the server to a phase's faults.
func (e *env) setChaos(c chaos.Config) error { return e.ch.Set(chaos.Rules(c)) }

func (e *env) start(cfg chaos.Config) {
	e.t.Helper()
	if e.ch == nil {
		var err error
		if e.ch, err = libchaos.New(libchaos.WithSeed(42)); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.setChaos(cfg); err != nil {
		e.t.Fatal(err)
	}
	var err error
	addr := e.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// The port of a stopped server is free again at once; a few tries
	// cover a slow release.
	for try := 0; ; try++ {
		e.srv, err = payserver.Start(payserver.Options{Addr: addr, LedgerPath: e.ledgerPath, Chaos: e.ch, NoLedgerDedup: e.noLedgerDedup, Redis: e.redis})
		if err == nil || try == 20 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.addr = e.srv.Addr()
}

func (e *env) stop() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := e.srv.Stop(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) client(runID string) *checkout.Client {
	e.t.Helper()
	return e.clientWith(checkout.Config{RunID: runID})
}

// clientWith starts a checkout client with cfg, whose target, pending
// store, chain and drain interval are the scenario's unless cfg sets them.
func (e *env) clientWith(cfg checkout.Config) *checkout.Client {
	e.t.Helper()
	cfg.Target, cfg.OutboxPath = e.addr, filepath.Join(e.dir, "pending.db")
	if cfg.Chain.BreakerFailures == 0 {
		mp, tp := cfg.Chain.MeterProvider, cfg.Chain.TracerProvider
		cfg.Chain = checkout.StoryChain(150*time.Millisecond, 7)
		cfg.Chain.MeterProvider, cfg.Chain.TracerProvider = mp, tp
	}
	if cfg.DrainEvery == 0 {
		cfg.DrainEvery = 40 * time.Millisecond
	}
	c, err := checkout.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) load(phases ...checkout.Phase) checkout.Load {
	return checkout.Load{
		Rate: 150, Concurrency: 6, Seed: 11, Phases: phases,
		SetChaos: func(_ context.Context, c chaos.Config) error { return e.setChaos(c) },
	}
}

var (
	flaky = chaos.Config{
		ErrorRate: 0.1, ErrorCodes: []codes.Code{codes.Unavailable, codes.Internal},
		Latency: time.Millisecond, SlowLatency: 150 * time.Millisecond, SlowFraction: 0.05,
		LostRate: 0.25, PushbackRate: 0.05, Pushback: 20 * time.Millisecond,
	}
	down    = chaos.Config{Down: true}
	healthy = chaos.Config{Latency: time.Millisecond, LostRate: 0.1}
)

// settle ends the chaos, drains c's pending store and checks the ledger: every
// payment once, none pending.
func (e *env) settle(ctx context.Context, c *checkout.Client, name string) checkout.Reconciliation {
	e.t.Helper()
	if err := e.setChaos(chaos.Config{}); err != nil {
		e.t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	if err := c.DrainAll(dctx); err != nil {
		e.t.Fatal(err)
	}
	r, err := c.Reconcile(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	check(e.t, name, r, false)
	return r
}

func check(t *testing.T, name string, r checkout.Reconciliation, wantPending bool) {
	t.Helper()
	t.Logf("%s: %v", name, r)
	if r.Duplicates != 0 || r.Lost != 0 || r.Unexpected != 0 {
		t.Errorf("%s: reconciliation failed: %v, for example %v", name, r, r.Examples)
	}
	if wantPending != (r.StillPending > 0) {
		t.Errorf("%s: %d payments still pending, want pending=%v", name, r.StillPending, wantPending)
	}
	if r.Expected == 0 {
		t.Errorf("%s: no payments made", name)
	}
}

func TestScenarioReconciles(t *testing.T) {
	e := &env{t: t, dir: t.TempDir()}
	e.ledgerPath = filepath.Join(e.dir, "ledger.db")
	e.start(chaos.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Run 1: flaky, then an outage that the run ends in. Payments made
	// during the outage are pending in its store when the client stops. The
	// outage lasts long enough for each method's breaker to see most of its
	// recent calls fail: a short blip is left to retries and the throttle.
	c1 := e.client("run1")
	err := c1.Run(ctx, e.load(
		checkout.Phase{Name: "flaky", Duration: 400 * time.Millisecond, Chaos: flaky},
		checkout.Phase{Name: "outage", Duration: time.Second, Chaos: down},
	))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.setChaos(chaos.Config{}); err != nil {
		t.Fatal(err)
	}
	r1, err := c1.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "run 1", r1, true)
	s1 := c1.Stats().Snapshot()
	opened := false
	for _, tr := range s1.Transitions {
		opened = opened || tr.To == "open"
	}
	if !opened || s1.Fallbacks["Charge:pending"] == 0 {
		t.Errorf("run 1: the outage should open the breaker and charges become pending; transitions %v, fallbacks %v", s1.Transitions, s1.Fallbacks)
	}
	pending := c1.Pending()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	// The server restarts between the runs, on the same ledger.
	e.stop()
	e.start(chaos.Config{})

	// Run 2: a new client process finds run 1's payments in its pending store,
	// and the server restarts once more in the middle of the run.
	c2 := e.client("run2")
	defer c2.Close()
	if got := c2.Pending(); got != pending {
		t.Fatalf("after the client restart %d payments are pending, want %d", got, pending)
	}
	done := make(chan error, 1)
	go func() {
		done <- c2.Run(ctx, e.load(
			checkout.Phase{Name: "recovery", Duration: 400 * time.Millisecond, Chaos: healthy},
			checkout.Phase{Name: "after-restart", Duration: 400 * time.Millisecond, Chaos: healthy},
		))
	}()
	// Restart the server while the run is on. The timer only places the
	// restart; the assertions hold wherever it falls.
	select {
	case <-time.After(300 * time.Millisecond):
	case err := <-done:
		t.Fatalf("run ended before the restart: %v", err)
	}
	e.stop()
	e.start(healthy)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := e.setChaos(chaos.Config{}); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	if err := c2.DrainAll(dctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c2.Confirm(ctx); err != nil || n == 0 {
		t.Errorf("Confirm = %d, %v; want the payments settled later confirmed", n, err)
	}
	r2, err := c2.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "run 2", r2, false)
	if !r2.OK() {
		t.Errorf("run 2 not OK: %v", r2)
	}
	// The chaos refuses no charge for good, so no pending charge may die.
	if dead, err := c2.DeadLetters(); err != nil || len(dead) != 0 {
		t.Errorf("dead letters %+v, %v; want none", dead, err)
	}

	// Run 1's settled payments are still there once each, after two
	// server restarts and the drain of pending payments.
	r1again, err := c2.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r1again.Duplicates != 0 {
		t.Errorf("duplicates after the drain: %v", r1again)
	}
	snap := c2.Stats().Snapshot()
	t.Logf("run 2: %d logical calls, %d attempts, %d retries, %d hedges, %d breaker transitions, fallbacks %v",
		snap.LogicalCalls, snap.Attempts, snap.Retries, snap.Hedges, len(snap.Transitions), snap.Fallbacks)
	st := e.srv.Stats()
	e.stop()
	t.Logf("server: %d payments, faults %v", st.Payments, st.Chaos.Faults)
}

// Without restarts, the idempotency interceptor alone keeps lost responses
// from turning into duplicate charges: the ledger's own check is off, and
// every repeated key is answered from the interceptor's store.
func TestIdempotencyInterceptorAloneDedups(t *testing.T) {
	e := &env{t: t, dir: t.TempDir(), noLedgerDedup: true}
	e.ledgerPath = filepath.Join(e.dir, "ledger.db")
	e.start(chaos.Config{})
	defer e.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := e.client("solo")
	defer c.Close()
	lossy := chaos.Config{Latency: time.Millisecond, LostRate: 0.3, ErrorRate: 0.05}
	if err := c.Run(ctx, e.load(checkout.Phase{Name: "lossy", Duration: 500 * time.Millisecond, Chaos: lossy})); err != nil {
		t.Fatal(err)
	}
	e.settle(ctx, c, "interceptor alone")
	st := e.srv.Stats()
	if st.Chaos.Faults.Lost == 0 || st.KeyReplays == 0 {
		t.Errorf("want lost responses answered by the interceptor: %d lost, %d interceptor replays", st.Chaos.Faults.Lost, st.KeyReplays)
	}
	t.Logf("lost %d, interceptor replays %d, ledger replays %d, conflicts %d", st.Chaos.Faults.Lost, st.KeyReplays, st.Replayed, st.KeyConflicts)
}

// With its outcomes in Redis (the server's -redis flag), the idempotency
// interceptor alone keeps every payment once across server restarts: the
// ledger's own check is off, and a payment retried after a restart is
// answered from what the server before the restart stored in Redis, which
// a memory store would have forgotten.
func TestRedisStoreKeepsPaymentsOnceAcrossRestarts(t *testing.T) {
	rs := redistest.Start(t)
	e := &env{t: t, dir: t.TempDir(), noLedgerDedup: true, redis: "redis://" + rs.Addr + "/0"}
	e.ledgerPath = filepath.Join(e.dir, "ledger.db")
	e.start(chaos.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := e.client("redis")
	defer c.Close()
	lossy := chaos.Config{Latency: time.Millisecond, LostRate: 0.3, ErrorRate: 0.05}
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, e.load(checkout.Phase{Name: "lossy", Duration: 800 * time.Millisecond, Chaos: lossy}))
	}()
	// Restart the server twice while the run is on. The timers only place
	// the restarts; the assertions hold wherever they fall.
	var replays uint64
	for range 2 {
		select {
		case <-time.After(250 * time.Millisecond):
		case err := <-done:
			t.Fatalf("run ended before a restart: %v", err)
		}
		replays += e.srv.Stats().KeyReplays
		e.stop()
		e.start(lossy)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := e.settle(ctx, c, "redis store")
	replays += e.srv.Stats().KeyReplays
	e.stop()
	if replays == 0 {
		t.Error("no lost response was answered from the store")
	}
	keys, err := rs.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if keys == 0 {
		t.Error("the server kept nothing in Redis: the -redis store is not in use")
	}
	t.Logf("%v; %d replays from the store, %d keys in Redis", r, replays, keys)
}

// Ports must be free: a busy port is reported, not waited on forever.
func TestBusyPortIsReported(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, err = payserver.Start(payserver.Options{Addr: lis.Addr().String(), LedgerPath: filepath.Join(t.TempDir(), "l.db")})
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
}

// The demo's reconcile check with the faults on the client's side, put
// innermost by checkout.Config.DialOptions so that every attempt, and
// every charge the pending queue sends again, meets them: attempts that
// fail before they are sent, and charges that succeeded on the server but
// are reported UNAVAILABLE. Every order must still be charged once.
func TestScenarioReconcilesWithClientChaos(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults chaos.Config
	}{
		{"failed before send", chaos.Config{ErrorRate: 0.15, ErrorCodes: []codes.Code{codes.Unavailable}}},
		{"succeeded on the server but reported UNAVAILABLE", chaos.Config{LostRate: 0.25}},
		{"both", chaos.Config{ErrorRate: 0.1, ErrorCodes: []codes.Code{codes.Unavailable}, LostRate: 0.2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{t: t, dir: t.TempDir()}
			e.ledgerPath = filepath.Join(e.dir, "ledger.db")
			e.start(chaos.Config{Latency: time.Millisecond})
			defer e.stop()
			clientChaos, err := libchaos.New(libchaos.WithSeed(9), libchaos.WithConfig(chaos.Rules(tc.faults)))
			if err != nil {
				t.Fatal(err)
			}
			c := e.clientWith(checkout.Config{RunID: "client-chaos", DialOptions: []grpc.DialOption{
				grpc.WithChainUnaryInterceptor(clientChaos.UnaryClientInterceptor()),
				grpc.WithChainStreamInterceptor(clientChaos.StreamClientInterceptor()),
			}})
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Run(ctx, e.load(checkout.Phase{Name: "client faults", Duration: 600 * time.Millisecond})); err != nil {
				t.Fatal(err)
			}
			// The faults stop, as a drill's do, before the pending
			// charges are drained and the ledger is read.
			if err := clientChaos.Set(libchaos.Config{}); err != nil {
				t.Fatal(err)
			}
			e.settle(ctx, c, tc.name)
			cc := clientChaos.Counters()
			if (tc.faults.ErrorRate > 0) != (cc.Errors["UNAVAILABLE"] > 0) || (tc.faults.LostRate > 0) != (cc.Lost > 0) {
				t.Errorf("the client's chaos did not inject what it was asked: %+v", cc)
			}
			if dead, err := c.DeadLetters(); err != nil || len(dead) != 0 {
				t.Errorf("dead letters %+v, %v; want none", dead, err)
			}
			s := c.Stats().Snapshot()
			t.Logf("client faults %+v; %d attempts, %d retries, fallbacks %v", cc, s.Attempts, s.Retries, s.Fallbacks)
		})
	}
}

// lockedBuffer is a log destination that the client's goroutines share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The client exports every client metric that the alert rules read, and
// logs failsoft's decisions with the trace ID of the call: a flaky phase
// makes retries, an outage opens the breaker.
func TestClientExportsWhatTheAlertsReadAndLogsDecisions(t *testing.T) {
	e := &env{t: t, dir: t.TempDir()}
	e.ledgerPath = filepath.Join(e.dir, "ledger.db")
	e.start(chaos.Config{})
	defer e.stop()
	mp, handler, err := metrics.Setup()
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Shutdown(context.Background(), mp)
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	var logs lockedBuffer
	cfg := checkout.Config{RunID: "observed", Log: slog.New(slog.NewTextHandler(&logs, nil))}
	cfg.Chain.MeterProvider, cfg.Chain.TracerProvider = mp, tp
	c := e.clientWith(cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Run(ctx, e.load(
		checkout.Phase{Name: "flaky", Duration: 300 * time.Millisecond, Chaos: flaky},
		checkout.Phase{Name: "outage", Duration: 2 * time.Second, Chaos: down},
	)); err != nil {
		t.Fatal(err)
	}
	e.settle(ctx, c, "observed")

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	exported := rec.Body.String()
	read := slices.Compact(slices.Sorted(slices.Values(regexp.MustCompile(`failsoft_client_[a-z_]+`).FindAllString(string(alerts.Rules()), -1))))
	if len(read) == 0 {
		t.Fatal("the alert rules read no client metric")
	}
	for _, name := range read {
		if !strings.Contains(exported, "\n"+name+"{") {
			t.Errorf("the client does not export %s, which the alert rules read", name)
		}
	}

	var opened string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `msg="failsoft: breaker opened"`) {
			opened = l
			break
		}
	}
	if opened == "" || !regexp.MustCompile(`trace_id=[0-9a-f]{32} `).MatchString(opened) {
		t.Errorf("no breaker opening logged with its trace ID; log:\n%s", logs.String())
	}
	t.Logf("rules read %v; %s", read, opened)
}

// The demo's flaky phase as the demo plays it (3% UNAVAILABLE, a slow
// tail, lost responses and pushback, with the story's breaker rule of 5
// failures within 30 s), at about the demo's number of calls (270, the
// demo's 18 s at 15 a second): retries absorb these failures, so the
// breaker must not open and fail calls the server would have served.
func TestFlakyPhaseOpensNoBreaker(t *testing.T) {
	e := &env{t: t, dir: t.TempDir()}
	e.ledgerPath = filepath.Join(e.dir, "ledger.db")
	e.start(chaos.Config{})
	defer e.stop()
	flakyPhase := checkout.StoryPhases(6 * time.Second)[1] // 30% of it: 1.8 s
	if flakyPhase.Name != "flaky" {
		t.Fatalf("the story's second phase is %q, want flaky", flakyPhase.Name)
	}
	c := e.clientWith(checkout.Config{RunID: "flaky", Chain: checkout.StoryChain(3*time.Second, 1)})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	load := e.load(flakyPhase)
	load.Concurrency = 8
	if err := c.Run(ctx, load); err != nil {
		t.Fatal(err)
	}
	e.settle(ctx, c, "flaky phase")
	s := c.Stats().Snapshot()
	for _, tr := range s.Transitions {
		if tr.To == "open" {
			t.Errorf("the breaker opened in the flaky phase: transitions %v, %d calls refused by it", s.Transitions, s.BreakerRejected)
			break
		}
	}
	f := e.srv.Stats().Chaos.Faults
	if f.Errors["UNAVAILABLE"] == 0 || f.Lost == 0 {
		t.Errorf("the flaky phase injected no errors or lost responses: %+v", f)
	}
	t.Logf("%d calls, %d attempts, %d retries; server faults %+v", s.LogicalCalls, s.Attempts, s.Retries, f)
}
