package checkout

import (
	"testing"
	"time"
)

// A sample counts outcomes since the start of the run and the latency of
// the charges finished since the previous sample; ByPhase splits the
// charge latencies by the phase they finished in.
func TestSamplesAndPhases(t *testing.T) {
	s := NewStats()
	s.startPhase("healthy")
	s.charge(StateSettled, 10*time.Millisecond)
	s.charge(StateSettled, 20*time.Millisecond)
	first := s.sample(time.Second, "healthy", "closed", 0)
	s.startPhase("outage")
	s.charge(StatePending, time.Millisecond)
	s.Fallback("Charge:pending")
	s.charge(StateDeclined, 2*time.Millisecond)
	s.Failed.Add(1)
	second := s.sample(2*time.Second, "outage", "open", 1)
	empty := s.sample(3*time.Second, "outage", "open", 1)

	for _, tc := range []struct {
		name string
		got  Sample
		want Sample
	}{
		{"first", first, Sample{Elapsed: time.Second, Phase: "healthy", Breaker: "closed", Settled: 2,
			Charge: Percentiles{N: 2, P50: 20 * time.Millisecond, P95: 20 * time.Millisecond, P99: 20 * time.Millisecond}}},
		{"second", second, Sample{Elapsed: 2 * time.Second, Phase: "outage", Breaker: "open", Queued: 1, Settled: 2, Fallbacks: 1, Failed: 2,
			Charge: Percentiles{N: 2, P50: 2 * time.Millisecond, P95: 2 * time.Millisecond, P99: 2 * time.Millisecond}}},
		{"no charge since", empty, Sample{Elapsed: 3 * time.Second, Phase: "outage", Breaker: "open", Queued: 1, Settled: 2, Fallbacks: 1, Failed: 2}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s sample = %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
	if got := s.Samples(); len(got) != 3 || got[1] != second {
		t.Errorf("Samples() = %+v", got)
	}
	byPhase := s.ByPhase()
	if len(byPhase) != 2 || byPhase[0].Name != "healthy" || byPhase[0].Charge.N != 2 || byPhase[1].Charge.N != 2 || byPhase[1].Charge.P99 != 2*time.Millisecond {
		t.Errorf("ByPhase() = %+v", byPhase)
	}
}

// The samples kept are bounded, however long the run.
func TestSamplesBounded(t *testing.T) {
	s := NewStats()
	for i := range maxSamples + 10 {
		s.sample(time.Duration(i)*time.Second, "healthy", "closed", 0)
	}
	if n := len(s.Samples()); n != maxSamples {
		t.Errorf("kept %d samples, want %d", n, maxSamples)
	}
}
