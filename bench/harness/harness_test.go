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
	cfg.TransientCalls = 20
	cfg.BadBackendCalls = 12
	cfg.LostCalls = 20
	cfg.TailCalls = 20
	cfg.Late = 2 * time.Millisecond
	cfg.OutageRate = 100
	cfg.OutageDown = 100 * time.Millisecond
	cfg.OutageAfter = 100 * time.Millisecond
	cfg.FlakyCalls = 20
	cfg.FlakyCallRate = 200
	// No hedge is ever sent: the hedge delay outlasts the call's
	// deadline. A hedge that wins at the same moment as the first attempt
	// makes failsafe-go unmarshal two replies into one message, which the
	// race detector reports in its code, not ours; a delay shorter than
	// the deadline would depend on how busy the machine is.
	cfg.Slow = 5 * time.Millisecond
	cfg.Params.HedgeDelay = 2 * cfg.Params.Timeout
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
		if len(r.Failed) > 0 {
			t.Errorf("%s: failed measurements: %v", r.Name, r.Failed)
		}
		for _, m := range Modes() {
			o, ok := r.Modes[m.Name]
			if m.FailsoftOnly && r.Name != Failsoft {
				if ok {
					t.Errorf("%s: ran %s, which is failsoft's alone", r.Name, m.Name)
				}
				continue
			}
			if !ok || o.Calls == 0 || o.Attempts == 0 {
				t.Errorf("%s: %s did not run: %+v", r.Name, m.Name, o)
			}
		}
		if o := r.Modes[ModeTransient]; o.Calls != cfg.TransientCalls {
			t.Errorf("%s: %d transient calls, want %d", r.Name, o.Calls, cfg.TransientCalls)
		}
		if r.Interleaved.Calls != 20 || r.Interleaved.Passes != 2 {
			t.Errorf("%s: interleaved %d calls in %d passes, want 20 in 2", r.Name, r.Interleaved.Calls, r.Interleaved.Passes)
		}
	}
	plain := rows[0]
	if plain.Name != "plain client" {
		t.Fatalf("first row is %q", plain.Name)
	}
	// A plain client sends each call once, and never charges twice.
	for _, m := range Modes() {
		if o, ok := plain.Modes[m.Name]; ok && o.Attempts != o.Calls {
			t.Errorf("plain client, %s: %d attempts for %d calls", m.Name, o.Attempts, o.Calls)
		}
	}
	if o := plain.Modes[ModeLost]; o.Duplicates != 0 {
		t.Errorf("plain client: %d duplicate charges", o.Duplicates)
	}
	var buf bytes.Buffer
	Markdown(&buf, rows, cfg, 1)
	lines := strings.Split(buf.String(), "\n")
	cost, _, _ := strings.Cut(buf.String(), "\n\n")
	if got := strings.Count(cost, "\n| "); got != len(rows)+1 {
		t.Errorf("cost table has %d rows besides the header, want %d:\n%s", got-1, len(rows), buf.String())
	}
	figures := 0
	for _, m := range Modes() {
		figures += len(m.Figures)
	}
	_, modes, _ := strings.Cut(buf.String(), "| failure mode |")
	if got := strings.Count(modes, "\n| "); got != figures+1 {
		t.Errorf("failure-mode table has %d rows besides the header, want %d:\n%s", got-1, figures, buf.String())
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
