package metrics

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Setup returns a meter provider and the handler that serves its metrics
// at /metrics. Each call has its own registry, so two servers in one test
// process do not mix their metrics. Shut the provider down when done.
func Setup() (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// Shutdown stops mp, for a deferred call.
func Shutdown(ctx context.Context, mp *sdkmetric.MeterProvider) error {
	if mp == nil {
		return nil
	}
	return mp.Shutdown(ctx)
}
