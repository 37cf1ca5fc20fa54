package retry

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// budgetModel is the budget's specification, kept plainly: every call,
// retry and refund with its time; the balance counts those of the window.
type budgetModel struct {
	cfg      Budget
	width    time.Duration
	base     time.Time
	calls    map[int64]int64 // by stretch of time
	spent    map[int64]int64
	now      time.Time
	sent     int // retries sent
	deposits int
}

func (m *budgetModel) epoch() int64 { return int64(m.now.Sub(m.base)/m.width) + 1 }

func (m *budgetModel) balance() float64 {
	e := m.epoch()
	var calls, spent int64
	for s := e - budgetSlots + 1; s <= e; s++ {
		calls += m.calls[s]
		spent += m.spent[s]
	}
	return m.cfg.Ratio*float64(calls) + m.cfg.MinPerSecond*m.cfg.TTL.Seconds() - float64(spent)
}

// TestBudgetModel runs random calls, retries, refunds and clock steps on
// the budget and on its model, with one injected clock: they must agree
// on every retry, and a target whose retries all fail (no refunds) gets
// no more retries than Ratio per call plus the floor over the run.
func TestBudgetModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := Budget{
			Ratio:        rapid.Float64Range(0.01, 1).Draw(t, "ratio"),
			MinPerSecond: rapid.Float64Range(0, 5).Draw(t, "floor"),
			TTL:          time.Duration(rapid.IntRange(1, 20).Draw(t, "ttl")) * time.Second,
		}
		clk := clock.NewFake(time.Unix(1000, 0))
		k := newBucket(cfg, clk.Now())
		m := &budgetModel{cfg: cfg, width: cfg.TTL / budgetSlots, base: clk.Now(), now: clk.Now(),
			calls: map[int64]int64{}, spent: map[int64]int64{}}
		refunds := rapid.Bool().Draw(t, "refunds")
		paid := 0 // retries that may still be refunded
		start := clk.Now()
		t.Repeat(map[string]func(*rapid.T){
			"call": func(t *rapid.T) {
				k.deposit(clk.Now())
				m.calls[m.epoch()]++
				m.deposits++
			},
			"retry": func(t *rapid.T) {
				want := m.balance() >= 1
				if got := k.allows(clk.Now()); got != want {
					t.Fatalf("allows = %v, model %v (balance %v)", got, want, m.balance())
				}
				if got := k.withdraw(clk.Now()); got != want {
					t.Fatalf("withdraw = %v, model %v", got, want)
				}
				if want {
					m.spent[m.epoch()]++
					m.sent++
					paid++
				}
			},
			"retry succeeds": func(t *rapid.T) {
				if !refunds || paid == 0 {
					t.Skip("no paid retry to refund")
				}
				k.refund(clk.Now())
				m.spent[m.epoch()]--
				paid--
			},
			"time passes": func(t *rapid.T) {
				d := time.Duration(rapid.Int64Range(1, int64(cfg.TTL)).Draw(t, "d"))
				clk.Advance(d)
				m.now = m.now.Add(d)
			},
			"": func(t *rapid.T) {
				if refunds {
					return
				}
				// Without refunds every retry is futile: the retries sent
				// stay within the deposits and the floor of the run.
				elapsed := clk.Now().Sub(start) + cfg.TTL
				bound := cfg.Ratio*float64(m.deposits) + cfg.MinPerSecond*elapsed.Seconds() + 1
				if float64(m.sent) > bound {
					t.Fatalf("%d futile retries sent, more than %v allowed", m.sent, bound)
				}
			},
		})
	})
}
