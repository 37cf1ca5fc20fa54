package checkout

import "time"

// Sample is the client's state at one moment of the run, taken with each
// progress line; the HTML report draws its charts from the samples.
type Sample struct {
	// Elapsed is the time since the load started.
	Elapsed time.Duration
	Phase   string
	// Settled, Fallbacks and Failed count since the start of the run:
	// charges paid at once, answers given by a fallback (payment pending,
	// cached reads), and declined charges plus reads and refunds that
	// failed.
	Settled, Fallbacks, Failed int
	// Charge is the latency of the charges that finished since the
	// previous sample, as the customer waited.
	Charge Percentiles
	// Breaker is the payment server breaker's state.
	Breaker string
	// Queued is the number of pending charges queued to be sent again.
	Queued int
}

// maxSamples bounds the samples kept: a day at one a second.
const maxSamples = 24 * 60 * 60

// PhaseLatency is the charge latency of one phase.
type PhaseLatency struct {
	Name   string
	Charge Percentiles
}

// Sample records the client's state now, elapsed into the run and in
// phase, and returns it. Samples beyond a day's worth are not kept.
func (c *Client) Sample(elapsed time.Duration, phase string) Sample {
	return c.stats.sample(elapsed, phase, c.BreakerState(), c.Pending())
}

func (s *Stats) sample(elapsed time.Duration, phase, breaker string, queued int) Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	fallbacks := 0
	for _, n := range s.fallbacks {
		fallbacks += n
	}
	smp := Sample{
		Elapsed: elapsed, Phase: phase, Breaker: breaker, Queued: queued,
		Settled: s.outcomes[StateSettled], Fallbacks: fallbacks,
		Failed: s.outcomes[StateDeclined] + int(s.Failed.Load()),
		Charge: percentiles(s.chargeLat[s.sampledLat:]),
	}
	s.sampledLat = len(s.chargeLat)
	if len(s.samples) < maxSamples {
		s.samples = append(s.samples, smp)
	}
	return smp
}

// Samples returns a copy of the samples taken so far.
func (s *Stats) Samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...)
}

// ByPhase returns the charge latency of each phase, in the order the
// phases ran.
func (s *Stats) ByPhase() []PhaseLatency {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PhaseLatency, len(s.phases))
	for i, p := range s.phases {
		to := len(s.chargeLat)
		if i+1 < len(s.phaseFrom) {
			to = s.phaseFrom[i+1]
		}
		out[i] = PhaseLatency{Name: p.Name, Charge: percentiles(s.chargeLat[s.phaseFrom[i]:to])}
	}
	return out
}
