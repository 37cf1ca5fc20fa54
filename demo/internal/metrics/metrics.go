package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

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

// Serve serves h at /metrics on addr until stop is called. addr must be a
// loopback address ("127.0.0.1:0" picks a free port): the metrics name the
// service's methods and targets, which are nobody else's business. It
// returns the address it listens on.
func Serve(addr string, h http.Handler) (bound string, stop func(context.Context) error, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("metrics: address %q is not a loopback address", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis) // ErrServerClosed once stopped
	}()
	return lis.Addr().String(), func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		<-done
		return err
	}, nil
}
