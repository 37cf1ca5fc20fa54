package payserver

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	demochaos "github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/demo/internal/metrics"
	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/policy"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg demochaos.Config) (*Server, paymentsv1.PaymentServiceClient, *grpc.ClientConn) {
	t.Helper()
	ch, err := chaos.New(chaos.WithSeed(1), chaos.WithConfig(demochaos.Rules(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Start(Options{LedgerPath: filepath.Join(t.TempDir(), "ledger.db"), Chaos: ch})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv, paymentsv1.NewPaymentServiceClient(conn), conn
}

func withKey(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), policy.KeyMetadata, key)
}

func TestChargeNeedsKeyAndChargesOncePerKey(t *testing.T) {
	_, api, _ := start(t, demochaos.Config{})
	req := &paymentsv1.ChargeRequest{OrderId: "o1", AmountMinor: 500, Currency: "EUR"}
	if _, err := api.Charge(context.Background(), req); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Charge without key: %v, want INVALID_ARGUMENT", err)
	}
	a, err := api.Charge(withKey("k1"), req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := api.Charge(withKey("k1"), req)
	if err != nil || b.Payment.PaymentId != a.Payment.PaymentId {
		t.Fatalf("second Charge with the same key = %v, %v; want payment %s again", b, err, a.Payment.PaymentId)
	}
	bad := &paymentsv1.ChargeRequest{OrderId: "o2", AmountMinor: -1, Currency: "EUR"}
	if _, err := api.Charge(withKey("k2"), bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Charge of a negative amount: %v", err)
	}
	if _, err := api.GetPayment(context.Background(), &paymentsv1.GetPaymentRequest{PaymentId: "pay_x"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetPayment(unknown): %v", err)
	}
}

// A lost response: the client sees UNAVAILABLE, the money moved, and the
// retry with the same key gets the recorded payment.
func TestLostResponseStillCommits(t *testing.T) {
	srv, api, _ := start(t, demochaos.Config{LostRate: 1})
	req := &paymentsv1.ChargeRequest{OrderId: "o1", AmountMinor: 500, Currency: "EUR"}
	if _, err := api.Charge(withKey("k1"), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("Charge = %v, want UNAVAILABLE", err)
	}
	if n := srv.Stats().Payments; n != 1 {
		t.Fatalf("ledger holds %d payments, want 1", n)
	}
	if err := srv.Chaos().Set(chaos.Config{}); err != nil {
		t.Fatal(err)
	}
	resp, err := api.Charge(withKey("k1"), req)
	if err != nil || srv.Stats().Payments != 1 || srv.Stats().Chaos.Faults.Lost != 1 {
		t.Fatalf("retry = %v, %v; stats %+v", resp, err, srv.Stats())
	}
}

func TestPushbackTrailer(t *testing.T) {
	_, api, _ := start(t, demochaos.Config{PushbackRate: 1, Pushback: 250 * time.Millisecond})
	var tr metadata.MD
	_, err := api.GetPayment(context.Background(), &paymentsv1.GetPaymentRequest{PaymentId: "x"}, grpc.Trailer(&tr))
	if status.Code(err) != codes.ResourceExhausted || len(tr.Get(chaos.PushbackTrailer)) != 1 || tr.Get(chaos.PushbackTrailer)[0] != "250" {
		t.Fatalf("err %v, trailer %v; want RESOURCE_EXHAUSTED with %s: 250", err, tr, chaos.PushbackTrailer)
	}
}

func TestStreams(t *testing.T) {
	_, api, conn := start(t, demochaos.Config{})
	ctx := withKey("batch1")

	// Client streaming: a batch is charged once per call key.
	charge := func() []*paymentsv1.Payment {
		st, err := api.BatchCharge(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := st.Send(&paymentsv1.BatchChargeRequest{Charge: &paymentsv1.ChargeRequest{OrderId: "b" + string(rune('0'+i)), AmountMinor: 100, Currency: "EUR"}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := st.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Payments
	}
	first, again := charge(), charge()
	if len(first) != 3 || first[2].PaymentId != again[2].PaymentId || first[1].IdempotencyKey != "batch1/1" {
		t.Fatalf("batches %v / %v", first, again)
	}

	// Bidi: the current status, then the change after a refund.
	w, err := api.WatchPayments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{first[0].PaymentId, "pay_none"} {
		if err := w.Send(&paymentsv1.WatchPaymentsRequest{PaymentId: id}); err != nil {
			t.Fatal(err)
		}
	}
	wantStatus := func(want paymentsv1.PaymentStatus) {
		t.Helper()
		resp, err := w.Recv()
		if err != nil || resp.Payment.Status != want {
			t.Fatalf("watch: %v, %v; want %v", resp, err, want)
		}
	}
	wantStatus(paymentsv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED)
	wantStatus(paymentsv1.PaymentStatus_PAYMENT_STATUS_NOT_FOUND)
	if _, err := api.Refund(ctx, &paymentsv1.RefundRequest{PaymentId: first[0].PaymentId}); err != nil {
		t.Fatal(err)
	}
	wantStatus(paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED)
	if err := w.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != io.EOF {
		t.Fatalf("watch end: %v, want io.EOF", err)
	}

	// Server streaming: the ledger, filtered by order prefix.
	ls, err := api.ListPayments(ctx, &paymentsv1.ListPaymentsRequest{OrderIdPrefix: "b"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := ls.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("ListPayments streamed %d payments, want 3", n)
	}

	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: paymentsv1.PaymentService_ServiceDesc.ServiceName})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
}

// The client switches phases through the control endpoint: the rules
// arrive whole, and the status shows what was injected.
func TestChaosControl(t *testing.T) {
	srv, api, _ := start(t, demochaos.Config{})
	ctx := context.Background()
	if err := demochaos.Post(ctx, srv.AdminAddr(), demochaos.UpdateFrom(demochaos.Config{Down: true})); err != nil {
		t.Fatal(err)
	}
	var tr metadata.MD
	_, err := api.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: "x"}, grpc.Trailer(&tr))
	if status.Code(err) != codes.Unavailable || !chaos.IsInjected(err) || tr.Get(chaos.Trailer)[0] != chaos.KindOutage {
		t.Fatalf("down: %v, trailer %v", err, tr)
	}
	bad := demochaos.UpdateFrom(demochaos.Config{ErrorRate: 2})
	if err := demochaos.Post(ctx, srv.AdminAddr(), bad); err == nil || !strings.Contains(err.Error(), "error_rate 2 is outside") {
		t.Fatalf("a bad rule: %v", err)
	}
	if err := demochaos.Post(ctx, srv.AdminAddr(), demochaos.UpdateFrom(demochaos.Config{})); err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: "x"}); status.Code(err) != codes.NotFound {
		t.Fatalf("healthy again: %v", err)
	}
	var st Stats
	if err := demochaos.Get(ctx, srv.AdminAddr(), "/stats", &st); err != nil || st.Chaos.Faults.Outage != 1 || st.Chaos.Config.Enabled {
		t.Fatalf("stats %+v, %v", st.Chaos, err)
	}
}

// /metrics on the admin address serves the server's failsoft metrics and
// the chaos counter in the Prometheus format.
func TestMetricsEndpoint(t *testing.T) {
	mp, h, err := metrics.Setup()
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Shutdown(context.Background(), mp)
	ch, err := chaos.New(chaos.WithSeed(1), chaos.WithMeterProvider(mp),
		chaos.WithConfig(demochaos.Rules(demochaos.Config{LostRate: 1})))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Start(Options{LedgerPath: filepath.Join(t.TempDir(), "ledger.db"), Chaos: ch, MeterProvider: mp, Metrics: h})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := paymentsv1.NewPaymentServiceClient(conn)
	req := &paymentsv1.ChargeRequest{OrderId: "o1", AmountMinor: 500, Currency: "EUR"}
	if _, err := api.Charge(withKey("k1"), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("lost charge: %v", err)
	}
	if _, err := api.Charge(withKey("k1"), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("lost replay: %v", err)
	}
	resp, err := http.Get("http://" + srv.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`failsoft_chaos_faults_total{`, `failsoft_chaos_kind="lost"`, `failsoft_server_idempotency_replays_total{`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
