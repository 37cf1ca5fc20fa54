package demo_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/demo/internal/payserver"
	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// Exactly once with the library's chaos on both sides: the server loses
// responses after commit and fails calls, the client fails attempts before
// they are sent and reports charges that succeeded as UNAVAILABLE. The
// ledger's own deduplication is off, so the idempotency keys alone keep
// every order charged once: after the chaos ends, charging every order
// again with its key returns the payment made under chaos, and the ledger
// holds one payment per order.
func TestExactlyOnceWithChaosOnBothSides(t *testing.T) {
	const orders = 120
	charge := "/payments.v1.PaymentService/Charge"
	serverChaos, err := chaos.New(chaos.WithSeed(5), chaos.WithConfig(chaos.Config{Enabled: true, Rules: []chaos.Rule{
		{Match: charge, Faults: chaos.Faults{ErrorRate: 0.05, LostRate: 0.2}},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	clientChaos, err := chaos.New(chaos.WithSeed(6), chaos.WithConfig(chaos.Config{Enabled: true, Rules: []chaos.Rule{
		{Match: charge, Faults: chaos.Faults{ErrorRate: 0.05, LostRate: 0.15}},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := payserver.Start(payserver.Options{LedgerPath: filepath.Join(t.TempDir(), "ledger.db"), Chaos: serverChaos, NoLedgerDedup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	// Breaker and throttle off: this test is about keys, not about
	// shedding load, and every order should get its retries.
	suite, err := failsoft.DialOptions(failsoft.WithoutBreaker(), failsoft.WithoutThrottle())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.Addr(), append(suite,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(clientChaos.UnaryClientInterceptor()),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := paymentsv1.NewPaymentServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	chargeOrder := func(i int) (*paymentsv1.ChargeResponse, error) {
		kctx := idempotency.WithKey(ctx, fmt.Sprintf("both-sides-%d", i))
		return api.Charge(kctx, &paymentsv1.ChargeRequest{OrderId: fmt.Sprintf("order-%d", i), AmountMinor: 100 + int64(i), Currency: "EUR"})
	}
	underChaos := map[int]string{}
	for i := range orders {
		if resp, err := chargeOrder(i); err == nil {
			underChaos[i] = resp.Payment.PaymentId
		} else if !chaos.IsInjected(err) {
			t.Fatalf("order %d failed with a fault nobody injected: %v", i, err)
		}
	}
	sc, cc := serverChaos.Counters(), clientChaos.Counters()
	if sc.Lost == 0 || cc.Lost == 0 || cc.Total()-cc.Lost == 0 {
		t.Fatalf("the chaos did not bite on both sides: server %+v, client %+v", sc, cc)
	}

	for _, inj := range []*chaos.Injector{serverChaos, clientChaos} {
		if err := inj.Set(chaos.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	ids := map[string]int{}
	for i := range orders {
		resp, err := chargeOrder(i)
		if err != nil {
			t.Fatalf("order %d after the chaos: %v", i, err)
		}
		id := resp.Payment.PaymentId
		if prev, ok := underChaos[i]; ok && prev != id {
			t.Errorf("order %d: charged as %s under chaos, answered %s after", i, prev, id)
		}
		if j, dup := ids[id]; dup {
			t.Errorf("orders %d and %d share payment %s", j, i, id)
		}
		ids[id] = i
	}
	if n := srv.Stats().Payments; n != orders {
		t.Errorf("ledger holds %d payments for %d orders", n, orders)
	}
	t.Logf("%d of %d orders confirmed under chaos; server faults %+v, client faults %+v", len(underChaos), orders, sc, cc)
}
