package payserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/failsoft/failsoft/demo/internal/ledger"
	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/logging"
	"github.com/failsoft/failsoft/interceptors/observe"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// Options configure Start.
type Options struct {
	// Addr is the gRPC listen address; "127.0.0.1:0" picks a free port.
	Addr string
	// AdminAddr is the admin HTTP listen address; empty for "127.0.0.1:0".
	AdminAddr string
	// LedgerPath is the bbolt file of the ledger.
	LedgerPath string
	// Chaos injects faults into the payment service; nil injects none.
	// Its control endpoint is served at /chaos on the admin address.
	Chaos *chaos.Injector
	// ChaosSecret, when set, is the shared secret the control endpoint
	// requires; without one it answers loopback peers only.
	ChaosSecret string
	// Log receives the server's log; nil discards it.
	Log *slog.Logger
	// TracerProvider makes the server spans; nil for none.
	TracerProvider trace.TracerProvider
	// MeterProvider records the server's metrics; nil for none.
	MeterProvider metric.MeterProvider
	// Metrics, when set, is served at /metrics on the admin address.
	Metrics http.Handler
	// Redis, when set, keeps the idempotency interceptor's outcomes in
	// Redis (a redis:// URL) instead of in memory.
	Redis string
	// NoLedgerDedup turns off the ledger's own answer to a repeated
	// idempotency key of a unary Charge, leaving deduplication to the
	// idempotency interceptor alone (whose memory store forgets on restart).
	NoLedgerDedup bool
}

// Server is a running payment server.
type Server struct {
	grpc       *grpc.Server
	health     *health.Server
	admin      *http.Server
	lis        net.Listener
	alis       net.Listener
	ledger     *ledger.Ledger
	svc        *service
	chaos      *chaos.Injector
	log        *slog.Logger
	done       chan error
	adone      chan struct{}
	keys       keyEvents
	closeStore func() error
}

// Start opens the ledger, listens, and serves until Stop.
func Start(o Options) (*Server, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:0"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Chaos == nil {
		var err error
		if o.Chaos, err = chaos.New(); err != nil {
			return nil, err
		}
	}
	var controlOpts []chaos.ControlOption
	if o.ChaosSecret != "" {
		controlOpts = append(controlOpts, chaos.WithSecret(o.ChaosSecret))
	}
	control, err := o.Chaos.Handler(controlOpts...)
	if err != nil {
		return nil, err
	}
	// Key conflicts and store failures go to the server's log, with the
	// caller's trace ID.
	logObs, err := logging.New(o.Log)
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(o.LedgerPath)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", o.Addr)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("listen %s: %w", o.Addr, err)
	}
	alis, err := net.Listen("tcp", o.AdminAddr)
	if err != nil {
		lis.Close()
		l.Close()
		return nil, fmt.Errorf("admin listen %s: %w", o.AdminAddr, err)
	}
	s := &Server{
		ledger: l, lis: lis, alis: alis, chaos: o.Chaos, log: o.Log,
		svc:    &service{ledger: l, log: o.Log, dedup: ledger.DedupAll},
		health: health.NewServer(),
		done:   make(chan error, 1), adone: make(chan struct{}),
	}
	if o.NoLedgerDedup {
		s.svc.dedup = ledger.DedupBatchItems
	}
	sopts, closeStore, err := serverChain(o.TracerProvider, o.MeterProvider, o.Chaos, o.Redis, observe.Multi(&s.keys, logObs))
	s.closeStore = closeStore
	if err != nil {
		lis.Close()
		alis.Close()
		l.Close()
		return nil, err
	}
	s.grpc = grpc.NewServer(sopts...)
	paymentsv1.RegisterPaymentServiceServer(s.grpc, s.svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(paymentsv1.PaymentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	mux := http.NewServeMux()
	mux.Handle("/chaos", control)
	if o.Metrics != nil {
		mux.Handle("/metrics", o.Metrics)
	}
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Stats())
	})
	s.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	go func() { s.done <- s.grpc.Serve(lis) }()
	go func() {
		defer close(s.adone)
		if err := s.admin.Serve(alis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin endpoint failed", "err", err)
		}
	}()
	s.log.Info("serving", "grpc", s.Addr(), "admin", "http://"+s.AdminAddr()+"/chaos", "metrics", o.Metrics != nil, "ledger", o.LedgerPath, "chaos", o.Chaos.Config().String())
	return s, nil
}

// Addr is the gRPC address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// AdminAddr is the admin HTTP address.
func (s *Server) AdminAddr() string { return s.alis.Addr().String() }

// Chaos returns the server's fault injector.
func (s *Server) Chaos() *chaos.Injector { return s.chaos }

// Stats is what the server has done.
type Stats struct {
	Payments  int    `json:"payments"`
	Committed uint64 `json:"charges_committed"`
	// Replayed counts charges the ledger answered with the payment it
	// already held for the key.
	Replayed uint64 `json:"charges_replayed"`
	// KeyReplays and KeyConflicts count what the idempotency interceptor
	// answered from its store, and refused as in flight or reused.
	KeyReplays   uint64       `json:"key_replays"`
	KeyConflicts uint64       `json:"key_conflicts"`
	Chaos        chaos.Status `json:"chaos"`
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Payments: s.ledger.Count(), Committed: s.svc.committed.Load(), Replayed: s.svc.replayed.Load(),
		KeyReplays: s.keys.replays.Load(), KeyConflicts: s.keys.conflicts.Load(),
		Chaos: s.chaos.Status(),
	}
}

// Stop shuts down gracefully: the health service reports NOT_SERVING, new
// calls are refused, and calls in flight may finish until ctx is done,
// when the rest are cancelled. Then the ledger is closed.
func (s *Server) Stop(ctx context.Context) error {
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		<-stopped
	}
	<-s.done
	actx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.admin.Shutdown(actx)
	<-s.adone
	n := s.ledger.Count()
	if cerr := s.ledger.Close(); err == nil {
		err = cerr
	}
	if cerr := s.closeStore(); err == nil {
		err = cerr
	}
	s.log.Info("stopped", "payments", n)
	return err
}
