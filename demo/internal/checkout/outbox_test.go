package checkout

import (
	"path/filepath"
	"testing"
	"time"
)

func TestOutboxSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "a"} {
		if err := o.Put(Entry{Key: k, OrderID: "order-" + k, AmountMinor: 10, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Touch("a"); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o, err = OpenOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	p, err := o.Pending(0)
	if err != nil || len(p) != 2 || p[0].Key != "a" || p[0].Attempts != 1 {
		t.Fatalf("Pending after reopen = %+v, %v", p, err)
	}
	if err := o.Settle("a", "pay_1", time.Unix(5, 0)); err != nil {
		t.Fatal(err)
	}
	// A settled key is not queued again.
	if err := o.Put(Entry{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	s, err := o.Settled()
	if err != nil || len(s) != 1 || s[0].PaymentID != "pay_1" || o.Len() != 1 {
		t.Fatalf("Settled = %+v, %v; Len = %d", s, err, o.Len())
	}
}
