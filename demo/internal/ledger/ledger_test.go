package ledger

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

func TestLedgerSurvivesReopenAndDedups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(100, 0)
	p1, replayed, err := l.Charge(now, DedupAll, false, Charge{Key: "k1", OrderID: "o1", AmountMinor: 100, Currency: "EUR"})
	if err != nil || replayed {
		t.Fatalf("first charge: replayed=%v err=%v", replayed, err)
	}
	if _, err := l.Refund(p1[0].PaymentId); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p2, replayed, err := l.Charge(now, DedupAll, false, Charge{Key: "k1", OrderID: "o1", AmountMinor: 100, Currency: "EUR"})
	if err != nil || !replayed || p2[0].PaymentId != p1[0].PaymentId {
		t.Fatalf("charge again after reopen: %v replayed=%v err=%v, want %v replayed", p2, replayed, err, p1[0].PaymentId)
	}
	got, err := l.Get(p1[0].PaymentId)
	if err != nil || got.Status != paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED || got.IdempotencyKey != "k1" {
		t.Fatalf("Get = %v, %v", got, err)
	}
	if _, err := l.Get("pay_nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(unknown) err = %v", err)
	}
	// A batch is all new or replayed item by item.
	batch, _, err := l.Charge(now, DedupAll, false, Charge{Key: "k1", OrderID: "o1", AmountMinor: 100, Currency: "EUR"}, Charge{Key: "k2", OrderID: "o2", AmountMinor: 5, Currency: "EUR"})
	if err != nil || batch[0].PaymentId != p1[0].PaymentId || l.Count() != 2 {
		t.Fatalf("batch = %v, %v, count %d", batch, err, l.Count())
	}
	var ids []string
	if err := l.List("o", func(p *paymentsv1.Payment) error { ids = append(ids, p.OrderId); return nil }); err != nil || len(ids) != 2 {
		t.Fatalf("List = %v, %v", ids, err)
	}
}

func TestLedgerWithoutDedupRecordsEveryCharge(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 2 {
		if _, _, err := l.Charge(time.Now(), DedupNone, false, Charge{Key: "k", OrderID: "o", AmountMinor: 1, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.Count(); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
	// Batch items are answered from the ledger even when sent on their own.
	b, _, err := l.Charge(time.Now(), DedupAll, true, Charge{Key: "b/0", OrderID: "ob", AmountMinor: 1, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	again, replayed, err := l.Charge(time.Now(), DedupBatchItems, false, Charge{Key: "b/0", OrderID: "ob", AmountMinor: 1, Currency: "EUR"})
	if err != nil || !replayed || again[0].PaymentId != b[0].PaymentId || l.Count() != 3 {
		t.Fatalf("batch item sent alone: %v replayed=%v err=%v count=%d", again, replayed, err, l.Count())
	}
}
