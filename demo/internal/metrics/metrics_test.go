package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/failsoft/failsoft/demo/internal/metrics"
	"github.com/failsoft/failsoft/interceptors/telemetry"
)

// The alert rules read the names the exporter gives failsoft's metrics.
func TestNamesAsTheRulesReadThem(t *testing.T) {
	mp, h, err := metrics.Setup()
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Shutdown(context.Background(), mp)
	calls, err := mp.Meter("t").Int64Counter(telemetry.MetricCalls, metric.WithUnit("{call}"))
	if err != nil {
		t.Fatal(err)
	}
	calls.Add(context.Background(), 1, metric.WithAttributes(attribute.String("grpc.status", "UNAVAILABLE"), attribute.String("grpc.target", "payments:443")))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{"failsoft_client_calls_total{", `grpc_status="UNAVAILABLE"`, `grpc_target="payments:443"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
}

// The endpoint listens on loopback only, and serves the handler at
// /metrics until stopped.
func TestServe(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		wantErr string
	}{
		{addr: "127.0.0.1:0"},
		{addr: "localhost:0"},
		{addr: "0.0.0.0:0", wantErr: "not a loopback address"},
		{addr: ":0", wantErr: "not a loopback address"},
		{addr: "example.com:9090", wantErr: "not a loopback address"},
		{addr: "127.0.0.1", wantErr: "missing port"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "failsoft_up 1\n") })
			bound, stop, err := metrics.Serve(tc.addr, h)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					stopNow(t, stop)
					t.Fatalf("Serve(%q) = %v, want an error with %q", tc.addr, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer stopNow(t, stop)
			resp, err := http.Get("http://" + bound + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "failsoft_up 1\n" {
				t.Errorf("GET /metrics = %s %q", resp.Status, body)
			}
		})
	}
}

func stopNow(t *testing.T, stop func(context.Context) error) {
	t.Helper()
	if stop == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Error(err)
	}
}
