package harness

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// smallConfig keeps the smoke test to seconds: every scenario runs, with
// a handful of calls.
func smallConfig() Config {
	cfg := DefaultConfig()
	cfg.Workers = 4
	cfg.OutageCalls = 8
	cfg.TransientCalls = 20
	cfg.LostCalls = 20
	cfg.TailCalls = 20
	// Slow calls finish before the hedge delay, so no hedge is sent: a
	// hedge that wins at the same moment as the first attempt makes
	// failsafe-go unmarshal two replies into one message, which the race
	// detector reports in its code, not ours.
	cfg.Slow = 5 * time.Millisecond
	cfg.OverloadDuration = 200 * time.Millisecond
	cfg.OverloadRounds = 2
	return cfg
}

// TestSmoke runs every scenario on every chain at a tiny size and checks
// the table has one row per chain and the facts that hold at any size.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts loopback servers")
	}
	cfg := smallConfig()
	rows := Run(context.Background(), cfg, RunOptions{Interleaved: 20, InterleavedPasses: 2})
	if len(rows) != len(Specs()) {
		t.Fatalf("got %d rows, want %d", len(rows), len(Specs()))
	}
	for _, r := range rows {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Name, r.Err)
		}
		if r.Pending || r.MicroOnly {
			continue
		}
		if r.Outage.Calls != cfg.OutageCalls || r.Transient.Calls != cfg.TransientCalls {
			t.Errorf("%s: scenario did not run: %+v %+v", r.Name, r.Outage, r.Transient)
		}
		if r.Overload.Offered == 0 || r.Overload.Attempts == 0 {
			t.Errorf("%s: overload offered nothing: %+v", r.Name, r.Overload)
		}
		if r.Interleaved.Calls != 20 || r.Interleaved.Passes != 2 {
			t.Errorf("%s: interleaved %d calls in %d passes, want 20 in 2", r.Name, r.Interleaved.Calls, r.Interleaved.Passes)
		}
	}
	plain := rows[0]
	if plain.Name != "plain client" {
		t.Fatalf("first row is %q", plain.Name)
	}
	// A plain client sends each call once: one attempt per call in an
	// outage, and never a duplicate charge.
	if plain.Outage.Attempts != plain.Outage.Calls {
		t.Errorf("plain client: %d attempts for %d calls", plain.Outage.Attempts, plain.Outage.Calls)
	}
	if plain.Lost.Duplicates != 0 {
		t.Errorf("plain client: %d duplicate charges", plain.Lost.Duplicates)
	}
	var buf bytes.Buffer
	Markdown(&buf, rows, cfg, 1)
	lines := strings.Split(buf.String(), "\n")
	if got := strings.Count(buf.String(), "\n| "); got != len(rows)+1 {
		t.Errorf("table has %d rows besides the header, want %d:\n%s", got-1, len(rows), buf.String())
	}
	if !strings.HasPrefix(lines[0], "| chain |") {
		t.Errorf("table does not start with its header:\n%s", buf.String())
	}
}

// TestServerFaultsDeterministic: the same seed and call id give the same
// faults, so chains are compared on the same sequence.
func TestServerFaultsDeterministic(t *testing.T) {
	a, err := StartServer(Faults{FailRate: 0.2, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	b, err := StartServer(Faults{FailRate: 0.2, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	fails := 0
	for i := range 1000 {
		id := "call-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		x, y := a.roll(1, id, i%3), b.roll(1, id, i%3)
		if x != y {
			t.Fatalf("roll differs for %s: %v vs %v", id, x, y)
		}
		if x < 0.2 {
			fails++
		}
	}
	if fails < 150 || fails > 250 {
		t.Errorf("%d of 1000 rolls under 0.2", fails)
	}
}

// BenchmarkInterceptors measures each chain's interceptors over a no-op
// invoker.
func BenchmarkInterceptors(b *testing.B) {
	for _, spec := range Specs() {
		f, err := Bench(spec, DefaultParams(), Interceptors)
		if err != nil || f == nil {
			continue
		}
		b.Run(spec.Name, f)
	}
}

// BenchmarkLoopback measures one unary call over loopback TCP through each
// chain.
func BenchmarkLoopback(b *testing.B) {
	for _, spec := range Specs() {
		f, err := Bench(spec, DefaultParams(), Loopback)
		if err != nil || f == nil {
			continue
		}
		b.Run(spec.Name, f)
	}
}
