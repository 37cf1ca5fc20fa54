package checkout

import (
	"context"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsoft/failsoft/interceptors/observe"
)

// Transition is one breaker state change.
type Transition struct {
	At       time.Time
	Target   string
	From, To string
}

// PhaseStart marks when a phase of the load began.
type PhaseStart struct {
	Name string
	At   time.Time
}

// AfterLoad names the time after the last phase, while pending charges
// drain.
const AfterLoad = "after the load"

// Stats counts what the client and its interceptors did. Its Observe
// method is the observer handed to the chain.
type Stats struct {
	Attempts, Retries, Hedges, Backoffs, Pushbacks atomic.Int64
	BreakerRejected, DeadlineFailFast, Throttled   atomic.Int64
	BulkheadRejected, BudgetExhausted, Replays     atomic.Int64
	// Failed counts reads and refunds that returned an error.
	Failed atomic.Int64

	retried atomic.Pointer[string] // trace ID of the first retried charge

	mu          sync.Mutex
	calls       map[string]int // logical calls by method
	outcomes    map[string]int // charge outcomes: settled, pending, declined
	fallbacks   map[string]int // by level
	stops       map[string]int // retry stop reasons
	transitions []Transition
	phases      []PhaseStart
	chargeLat   []time.Duration
	readLat     []time.Duration
	phaseFrom   []int // index into chargeLat where each phase began
	samples     []Sample
	sampledLat  int // charge latencies already in a sample
}

// NewStats returns empty stats.
func NewStats() *Stats {
	return &Stats{calls: map[string]int{}, outcomes: map[string]int{}, fallbacks: map[string]int{}, stops: map[string]int{}}
}

// Observe implements observe.Observer.
func (s *Stats) Observe(ctx context.Context, e observe.Event) {
	switch e.Kind {
	case observe.AttemptStart:
		s.Attempts.Add(1)
		if e.Attempt > 1 && !e.Hedge {
			s.Retries.Add(1)
			if path.Base(e.Method) == "Charge" && s.retried.Load() == nil {
				if tid := traceIDOf(ctx); tid != "" {
					s.retried.CompareAndSwap(nil, &tid)
				}
			}
		}
	case observe.Hedge:
		s.Hedges.Add(1)
	case observe.Backoff:
		s.Backoffs.Add(1)
		if e.Reason == "pushback" {
			s.Pushbacks.Add(1)
		}
	case observe.BreakerRejected:
		s.BreakerRejected.Add(1)
	case observe.BulkheadRejected:
		s.BulkheadRejected.Add(1)
	case observe.BudgetExhausted:
		s.BudgetExhausted.Add(1)
	case observe.Throttled:
		s.Throttled.Add(1)
	case observe.DeadlineFailFast:
		s.DeadlineFailFast.Add(1)
	case observe.Replay:
		s.Replays.Add(1)
	case observe.BreakerState:
		s.mu.Lock()
		s.transitions = append(s.transitions, Transition{At: time.Now(), Target: e.Target, From: e.From, To: e.To})
		s.mu.Unlock()
	case observe.RetryStopped:
		s.mu.Lock()
		s.stops[e.Reason]++
		s.mu.Unlock()
	case observe.Fallback:
		s.Fallback(path.Base(e.Method) + ":" + e.Reason)
	}
}

// Fallback counts a fallback answer at level.
func (s *Stats) Fallback(level string) {
	s.mu.Lock()
	s.fallbacks[level]++
	s.mu.Unlock()
}

func (s *Stats) startPhase(name string) {
	s.mu.Lock()
	s.phases = append(s.phases, PhaseStart{Name: name, At: time.Now()})
	s.phaseFrom = append(s.phaseFrom, len(s.chargeLat))
	s.mu.Unlock()
}

func (s *Stats) call(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
}

func (s *Stats) charge(outcome string, d time.Duration) {
	s.mu.Lock()
	s.outcomes[outcome]++
	s.chargeLat = append(s.chargeLat, d)
	s.mu.Unlock()
}

func (s *Stats) read(d time.Duration) {
	s.mu.Lock()
	s.readLat = append(s.readLat, d)
	s.mu.Unlock()
}

// Snapshot is a copy of the stats at one moment.
type Snapshot struct {
	Calls                                  map[string]int
	LogicalCalls                           int
	Outcomes                               map[string]int
	Fallbacks                              map[string]int
	RetryStops                             map[string]int
	Transitions                            []Transition
	Phases                                 []PhaseStart
	Attempts, Retries, Hedges, Backoffs    int64
	Pushbacks, BreakerRejected, FailFast   int64
	Throttled, BulkheadRejected, Exhausted int64
	Replays                                int64
	Charge, Read                           Percentiles
	// RetriedTrace is the trace ID of a charge that was retried.
	RetriedTrace string
}

// Percentiles of a latency distribution.
type Percentiles struct {
	N             int
	P50, P95, P99 time.Duration
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	d = slices.Clone(d)
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Percentiles{N: len(d), P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}

// Snapshot returns a copy of the stats.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{
		Calls: clone(s.calls), Outcomes: clone(s.outcomes), Fallbacks: clone(s.fallbacks), RetryStops: clone(s.stops),
		Transitions: slices.Clone(s.transitions), Phases: slices.Clone(s.phases),
		Attempts: s.Attempts.Load(), Retries: s.Retries.Load(), Hedges: s.Hedges.Load(), Backoffs: s.Backoffs.Load(),
		Pushbacks: s.Pushbacks.Load(), BreakerRejected: s.BreakerRejected.Load(), FailFast: s.DeadlineFailFast.Load(),
		Throttled: s.Throttled.Load(), BulkheadRejected: s.BulkheadRejected.Load(), Exhausted: s.BudgetExhausted.Load(),
		Replays: s.Replays.Load(),
		Charge:  percentiles(s.chargeLat), Read: percentiles(s.readLat),
	}
	if p := s.retried.Load(); p != nil {
		snap.RetriedTrace = *p
	}
	for _, n := range s.calls {
		snap.LogicalCalls += n
	}
	return snap
}

func clone(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *Stats) count(outcome string) {
	s.mu.Lock()
	s.outcomes[outcome]++
	s.mu.Unlock()
}
