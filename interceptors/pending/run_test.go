package pending_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/pending"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// Run drains on every tick of its clock and returns when its context ends.
func TestRunDrainsEveryInterval(t *testing.T) {
	clk := clock.NewFake(start)
	store := newStore(t, 10)
	settled := make(chan string, 10)
	q := newQueue(t, store, pending.WithClock(clk), pending.WithDrain(time.Second, 8, time.Minute),
		pending.OnSettled(func(_ context.Context, s pending.Settled) { settled <- s.Key }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx, acceptAll{}) }()
	for i, k := range []string{"a", "b"} {
		clk.BlockUntil(1) // Run waits for its next pass
		add(t, store, k, start.Add(time.Duration(i)*time.Second))
		clk.Advance(time.Second)
		if got := <-settled; got != k {
			t.Fatalf("settled %s, want %s", got, k)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil when its context ends", err)
	}
}

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	clk := clock.NewFake(start)
	store := newStore(t, 10)
	q := newQueue(t, store, pending.WithClock(clk), pending.WithMeterProvider(mp))
	add(t, store, "old", start.Add(-90*time.Second))
	add(t, store, "new", start)
	if err := store.Bury(context.Background(), pending.Dead{Entry: pending.Entry{Key: "gone", Method: keyedWrite}, Reason: "refused"}); err != nil {
		t.Fatal(err)
	}
	conn := &fakeConn{answer: func(key string, _ *policytestv1.PingRequest) error { return nil }}
	if _, err := q.DrainOnce(context.Background(), limitOne{conn}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Second)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if v, _ := p.Attributes.Value(attribute.Key("grpc.method")); v.AsString() != keyedWrite {
						t.Errorf("%s without the method: %v", m.Name, p.Attributes)
					}
					got[m.Name] += float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				got[m.Name] = float64(d.DataPoints[0].Value)
			case metricdata.Gauge[float64]:
				got[m.Name] = d.DataPoints[0].Value
			}
		}
	}
	want := map[string]float64{pending.MetricSettled: 1, pending.MetricDepth: 1, pending.MetricOldestAge: 5, pending.MetricDeadDepth: 1}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %v, want %v (all: %v)", name, got[name], w, got)
		}
	}
}

// limitOne lets the first redelivery through and answers the rest with a
// breaker rejection.
type limitOne struct{ c *fakeConn }

func (l limitOne) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if len(l.c.sent) > 0 {
		return &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open"}
	}
	return l.c.Invoke(ctx, method, args, reply, opts...)
}

func (l limitOne) NewStream(ctx context.Context, d *grpc.StreamDesc, m string, o ...grpc.CallOption) (grpc.ClientStream, error) {
	return l.c.NewStream(ctx, d, m, o...)
}

// A pass that settled a full batch is followed by another at once: a
// backlog drains without waiting an interval per batch.
func TestRunDrainsABacklogWithoutWaiting(t *testing.T) {
	clk := clock.NewFake(start)
	store := newStore(t, 10)
	var settled []string
	ctx, cancel := context.WithCancel(context.Background())
	q := newQueue(t, store, pending.WithClock(clk), pending.WithDrain(time.Second, 2, time.Minute),
		pending.OnSettled(func(_ context.Context, s pending.Settled) {
			settled = append(settled, s.Key)
			if len(settled) == 5 {
				cancel()
			}
		}))
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		add(t, store, k, start.Add(time.Duration(i-5)*time.Millisecond))
	}
	if err := q.Run(ctx, acceptAll{}); err != nil {
		t.Fatal(err)
	}
	if len(settled) != 5 || clk.Now() != start {
		t.Fatalf("settled %v by %v; want all five in batches of two with no wait", settled, clk.Now().Sub(start))
	}
}
