package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
	"github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/demo/internal/checkout"
	"github.com/failsoft/failsoft/demo/internal/metrics"
	"github.com/failsoft/failsoft/demo/internal/tracing"
)

func main() {
	err := run()
	var failed reconFailed
	switch {
	case errors.As(err, &failed):
		fmt.Fprintln(os.Stderr, "client: reconciliation failed")
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
}

type reconFailed struct{}

func (reconFailed) Error() string { return "reconciliation failed" }

func run() error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	server := fs.String("server", "", "payment server gRPC address (required)")
	admin := fs.String("admin", "", "payment server admin address, to switch chaos per phase (empty: leave the server's chaos as it is)")
	outboxPath := fs.String("outbox", filepath.Join(os.TempDir(), "failsoft-demo", "outbox.db"), "bbolt file of the pending charges")
	duration := fs.Duration("duration", time.Minute, "length of the load, split into healthy 20%, flaky 30%, outage 20%, recovery 30%")
	rate := fs.Float64("rate", 15, "operations started per second")
	concurrency := fs.Int("concurrency", 8, "operations in flight at most")
	seed := fs.Uint64("seed", 1, "seed of the operation mix and backoff jitter")
	breakerOpen := fs.Duration("breaker-open", 3*time.Second, "how long the breaker stays open before probing")
	drainTimeout := fs.Duration("drain-timeout", 30*time.Second, "how long to wait for pending charges to drain after the load")
	runID := fs.String("run-id", "", "prefix of this run's order IDs (default: from the time)")
	logPath := fs.String("log", "", "write the failure log (with trace IDs) to this file instead of stderr")
	otlp := fs.String("otlp", "", "export spans over OTLP gRPC to this HOST:PORT (a local Jaeger, for example)")
	traceFile := fs.String("trace-file", "", "write the trace ID of one retried charge to this file, when -otlp exports it")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:0", "loopback address to serve the client's metrics at /metrics on (port 0 picks a free one; empty for none)")
	progress := fs.Duration("progress", time.Second, "interval of progress lines and of the HTML report's samples; 0 prints no lines (samples are then taken each second)")
	htmlPath := fs.String("html", "", "write the HTML report (one self-contained file) to this path")
	jaeger := fs.String("jaeger", "", "Jaeger query URL (http://HOST:PORT) to read the retried charge's trace back from, for the HTML report's waterfall")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	switch {
	case *server == "":
		return errors.New("-server is required")
	case *duration <= 0:
		return fmt.Errorf("-duration %v must be positive", *duration)
	case *breakerOpen <= 0:
		return fmt.Errorf("-breaker-open %v must be positive", *breakerOpen)
	case *drainTimeout < 0:
		return fmt.Errorf("-drain-timeout %v is negative", *drainTimeout)
	}
	if *runID == "" {
		*runID = "ord" + strconv.FormatInt(time.Now().Unix(), 36)
	}
	var logw io.Writer = os.Stderr
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	log := slog.New(slog.NewTextHandler(logw, nil))
	if err := os.MkdirAll(filepath.Dir(*outboxPath), 0o755); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	tp, shutdownTracing, err := tracing.Setup(ctx, "payments-checkout", *otlp)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	mp, metricsHandler, err := metrics.Setup()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = metrics.Shutdown(sctx, mp)
	}()
	if *metricsAddr != "" {
		bound, stopMetrics, err := metrics.Serve(*metricsAddr, metricsHandler)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = stopMetrics(sctx)
		}()
		fmt.Printf("client metrics at http://%s/metrics while the client runs\n", bound)
	}
	chain := checkout.StoryChain(*breakerOpen, *seed)
	chain.TracerProvider, chain.MeterProvider = tp, mp
	c, err := checkout.New(checkout.Config{
		Target: *server, OutboxPath: *outboxPath, RunID: *runID, Chain: chain, Log: log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if n := c.Pending(); n > 0 {
		fmt.Printf("pending: %d payments from an earlier run; they will be sent again with their keys\n", n)
	}
	start := time.Now()
	load := checkout.Load{
		Rate: *rate, Concurrency: *concurrency, Phases: checkout.StoryPhases(*duration), Seed: *seed,
		Progress: os.Stdout, ProgressEvery: *progress,
	}
	if *progress == 0 {
		load.Progress = nil
	}
	if *admin != "" {
		load.SetChaos = func(ctx context.Context, cfg chaos.Config) error {
			return chaos.Post(ctx, *admin, chaos.UpdateFrom(cfg))
		}
	}
	if err := c.Run(ctx, load); err != nil {
		return err
	}
	// Settle up: no more chaos, drain what is pending, confirm by email.
	if *admin != "" {
		if err := chaos.Post(ctx, *admin, chaos.UpdateFrom(chaos.Config{})); err != nil {
			return err
		}
	}
	dctx, cancel := context.WithTimeout(ctx, *drainTimeout)
	derr := c.DrainAll(dctx)
	cancel()
	c.Sample(time.Since(start), checkout.AfterLoad) // the queue after draining
	if derr != nil {
		fmt.Println("pending:", derr)
	}
	confirmed, err := c.Confirm(ctx)
	if err != nil {
		log.Warn("confirmation watch failed", "err", err)
	}
	recon, err := c.Reconcile(ctx)
	if err != nil {
		return err
	}
	dead, err := c.DeadLetters()
	if err != nil {
		log.Warn("reading dead letters failed", "err", err)
	}
	rep := checkout.Report{
		Stats: c.Stats().Snapshot(), Start: start, Confirmed: confirmed, Dead: len(dead), Recon: recon, Traces: *otlp,
		Samples: c.Stats().Samples(), ByPhase: c.Stats().ByPhase(),
	}
	if *admin != "" {
		var v checkout.ServerView
		if err := chaos.Get(ctx, *admin, "/stats", &v); err == nil {
			rep.Server = &v
		}
	}
	// Flush the spans before the report names a trace to look up.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := tp.ForceFlush(fctx); err != nil {
		log.Warn("exporting spans failed", "err", err)
	}
	cancel()
	fmt.Println()
	rep.Print(os.Stdout)
	for i, d := range dead {
		if i == 5 {
			fmt.Printf("  ... and %d more dead letters\n", len(dead)-i)
			break
		}
		fmt.Printf("  dead letter      %s: %s\n", d.Key, d.Reason)
	}
	if *traceFile != "" && *otlp != "" && rep.Stats.RetriedTrace != "" {
		if err := os.WriteFile(*traceFile, []byte(rep.Stats.RetriedTrace+"\n"), 0o644); err != nil {
			log.Warn("writing -trace-file failed", "err", err)
		}
	}
	if *logPath != "" {
		fmt.Printf("  %-16s %s\n", "failure log", *logPath)
	}
	if *htmlPath != "" {
		if *jaeger != "" && *otlp != "" && rep.Stats.RetriedTrace != "" {
			rep.Waterfall, rep.WaterfallMissing = readWaterfall(ctx, *jaeger, rep.Stats.RetriedTrace, aSecond)
		}
		link, err := writeHTML(*htmlPath, &rep)
		if err != nil {
			return err
		}
		fmt.Printf("  %-16s %s\n", "html report", link)
	}
	if !recon.OK() {
		return reconFailed{}
	}
	return nil
}

// readWaterfall reads the trace back from Jaeger for the report to draw,
// or says why it could not. Spans are exported in batches, so a trace not
// found yet is asked for again, up to five times, after wait.
func readWaterfall(ctx context.Context, base, traceID string, wait func(context.Context) error) (tr *waterfall.Trace, missing string) {
	jc := &waterfall.Client{Base: base}
	var err error
	for try := 0; try < 5; try++ {
		if try > 0 {
			if err := wait(ctx); err != nil {
				return nil, err.Error()
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		tr, err = jc.Trace(rctx, traceID)
		cancel()
		if err == nil {
			return tr, ""
		}
	}
	return nil, err.Error()
}

// aSecond waits a second, or until ctx ends.
func aSecond(ctx context.Context) error {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// writeHTML writes the HTML report to path and returns its file:// URL.
func writeHTML(path string, rep *checkout.Report) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		return "", fmt.Errorf("html report: %w", err)
	}
	if err := os.WriteFile(abs, b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("html report: %w", err)
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
}
