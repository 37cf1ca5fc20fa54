package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

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
