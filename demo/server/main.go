package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	demochaos "github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/demo/internal/metrics"
	"github.com/failsoft/failsoft/demo/internal/payserver"
	"github.com/failsoft/failsoft/demo/internal/tracing"
	"github.com/failsoft/failsoft/interceptors/chaos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "gRPC listen address (port 0 picks a free one)")
	admin := fs.String("admin-addr", "127.0.0.1:0", "admin HTTP listen address for /chaos, /stats and /metrics (/chaos answers loopback peers only, unless FAILSOFT_CHAOS_SECRET is set and sent as a bearer token)")
	data := fs.String("data", filepath.Join(os.TempDir(), "failsoft-demo", "ledger.db"), "ledger file")
	addrFile := fs.String("addr-file", "", "write the chosen addresses to this file once serving (grpc=HOST:PORT and admin=HOST:PORT lines)")
	seed := fs.Uint64("seed", 1, "seed of the chaos decisions")
	otlp := fs.String("otlp", "", "export spans over OTLP gRPC to this HOST:PORT (a local Jaeger, for example)")
	redisURL := fs.String("redis", "", "keep idempotency outcomes in Redis at this URL (redis://HOST:PORT/DB) instead of in memory")
	noLedgerDedup := fs.Bool("no-ledger-dedup", false, "record a repeated idempotency key as a new payment, leaving deduplication to the idempotency interceptor alone (duplicates appear after a restart)")
	grace := fs.Duration("grace", 5*time.Second, "how long calls in flight may finish on shutdown")
	var cfg demochaos.Config
	demochaos.RegisterFlags(fs, &cfg)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *grace < 0 {
		return fmt.Errorf("-grace %v is negative", *grace)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	mp, metricsHandler, err := metrics.Setup()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = metrics.Shutdown(sctx, mp)
	}()
	ch, err := chaos.New(chaos.WithSeed(*seed), chaos.WithConfig(demochaos.Rules(cfg)), chaos.WithMeterProvider(mp))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*data), 0o755); err != nil {
		return err
	}
	tp, shutdownTracing, err := tracing.Setup(context.Background(), "payments-server", *otlp)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	srv, err := payserver.Start(payserver.Options{TracerProvider: tp, MeterProvider: mp, Metrics: metricsHandler, Addr: *addr, AdminAddr: *admin, LedgerPath: *data, Chaos: ch, ChaosSecret: os.Getenv("FAILSOFT_CHAOS_SECRET"), Log: log, NoLedgerDedup: *noLedgerDedup, Redis: *redisURL})
	if err != nil {
		return err
	}
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		body := fmt.Sprintf("grpc=%s\nadmin=%s\n", srv.Addr(), srv.AdminAddr())
		err := os.WriteFile(tmp, []byte(body), 0o644)
		if err == nil {
			err = os.Rename(tmp, *addrFile)
		}
		if err != nil {
			_ = srv.Stop(context.Background())
			return fmt.Errorf("write -addr-file: %w", err)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("shutting down", "signal", s.String(), "grace", *grace)
	ctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	st := srv.Stats()
	log.Info("faults injected", "total", st.Chaos.Total, "errors", st.Chaos.Faults.Errors, "outage", st.Chaos.Faults.Outage,
		"lost", st.Chaos.Faults.Lost, "pushback", st.Chaos.Faults.Pushback, "slow", st.Chaos.Faults.Slow)
	return srv.Stop(ctx)
}
