package demo_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/alerts"
	chaos "github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/demo/internal/checkout"
	"github.com/failsoft/failsoft/demo/internal/metrics"
	libchaos "github.com/failsoft/failsoft/interceptors/chaos"
)

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
		checkout.Phase{Name: "outage", Duration: 300 * time.Millisecond, Chaos: down},
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
