package harness

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Outcome is what one chain did in one failure mode. A mode fills the
// fields it measures.
type Outcome struct {
	// Calls logical calls were made (offered, in the open-loop modes), OK
	// of them succeeded, and Attempts calls reached the servers.
	Calls, OK, Attempts int
	// Window is the time over which an open-loop mode offered its calls.
	Window time.Duration
	// Duplicates are the extra charges (a call charged three times counts
	// two); FailedCommitted are the calls that failed for their caller
	// although the server committed their charge.
	Duplicates, FailedCommitted int
	// P90 is the 90th percentile of a logical call's latency.
	P90 time.Duration
	// Opens counts the breaker's transitions to open; -1 when the chain
	// has no breaker.
	Opens int64
	// Recovery is set by the outage modes.
	Recovery Recovery
}

// Success is the fraction of logical calls that succeeded.
func (o Outcome) Success() float64 { return ratio(o.OK, o.Calls) }

// AttemptsPerCall is the calls that reached the servers per logical call.
func (o Outcome) AttemptsPerCall() float64 { return ratio(o.Attempts, o.Calls) }

// Goodput is successful logical calls per second of an open-loop mode.
func (o Outcome) Goodput() float64 {
	if o.Window <= 0 {
		return 0
	}
	return float64(o.OK) / o.Window.Seconds()
}

// add accumulates another round of the same chain and mode.
func (o *Outcome) add(r Outcome) {
	o.Calls += r.Calls
	o.OK += r.OK
	o.Attempts += r.Attempts
	o.Window += r.Window
	o.Duplicates += r.Duplicates
	o.FailedCommitted += r.FailedCommitted
	if o.Opens >= 0 && r.Opens >= 0 {
		o.Opens += r.Opens
	} else {
		o.Opens = -1
	}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Recovery is how a chain came through an outage followed by a heal.
type Recovery struct {
	// DownCalls started during the outage; DownAttempts reached the
	// server during it.
	DownCalls, DownAttempts int
	// SoonCalls started within the first second after the heal, SoonOK of
	// them succeeded; LaterCalls started a second or more after it.
	SoonCalls, SoonOK, LaterCalls, LaterOK int
	// LastFailure is when, after the heal, the last failed call returned
	// to its caller; Failed reports whether any did.
	LastFailure time.Duration
	Failed      bool
}

// recoveryWindow is how soon after a heal calls must succeed again.
const recoveryWindow = time.Second

// recoveryOf sorts the records of an outage run into a Recovery: heal is
// when the server healed, from the start of the loop, and downAttempts
// the attempts that had reached it by then.
func recoveryOf(recs []record, heal time.Duration, downAttempts int) Recovery {
	r := Recovery{DownAttempts: downAttempts}
	for _, c := range recs {
		switch {
		case c.Start < heal:
			r.DownCalls++
		case c.Start < heal+recoveryWindow:
			r.SoonCalls++
			if c.OK {
				r.SoonOK++
			}
		default:
			r.LaterCalls++
			if c.OK {
				r.LaterOK++
			}
		}
		if !c.OK && c.End > heal {
			r.Failed = true
			r.LastFailure = max(r.LastFailure, c.End-heal)
		}
	}
	return r
}

// Mode is one failure mode of issue #18: a scenario every chain meets with
// the same seeded faults, the figures it shows and failsoft's goals for
// them.
type Mode struct {
	Name string
	// Setup is how failsoft is set up (the peers keep Params).
	Setup Setup
	// FailsoftOnly modes run failsoft alone: they change only failsoft's
	// setup, and the peers' figures are those of the mode before.
	FailsoftOnly bool
	// Rounds, when set, splits the mode into that many rounds, chains
	// interleaved, whose outcomes add up (see Config.OverloadRounds).
	Rounds func(cfg Config) int
	run    func(ctx context.Context, spec Spec, cfg Config, round int) (Outcome, error)
	// Figures are the rows the mode shows in the table.
	Figures []Figure
}

// Refs are the outcomes a figure compares a chain's with, from the same
// run and mode.
type Refs struct {
	// Plain is the plain client's outcome; nil when not measured.
	Plain *Outcome
	// Best is the highest success of a retrying peer (every chain but the
	// plain client and failsoft), BestName its chain; Best is negative
	// when none was measured.
	Best     float64
	BestName string
}

// Figure is one row of the failure-mode table.
type Figure struct {
	Name string
	Cell func(o Outcome, r Refs) string
	// Goal states failsoft's goal for the figure; empty when there is
	// none. Met checks it.
	Goal string
	Met  func(o Outcome, r Refs) (met, measured bool)
}

// The goals' limits (issue #18).
const (
	goalTransientGap      = 0.005
	goalTransientAttempts = 1.3
	goalBadSuccess        = 0.99
	goalBadAttempts       = 1.55
	goalLostOK            = 0.99
	goalFailedCommitted   = 0.01
	goalGoodput           = 0.9
	goalAmplification     = 1.2
	goalOutageBreaker     = 0.05
	goalOutageNoBreaker   = 1.15
	goalRecovered         = 0.99
)

// Mode names.
const (
	ModeTransient  = "20% transient UNAVAILABLE"
	ModeBadFailing = "1 of 3 backends fails every call"
	ModeBadLate    = "1 of 3 backends answers late"
	ModeLost       = "charge responses lost after commit"
	ModeOutage     = "outage, then healthy"
	ModeOutageOff  = "outage, then healthy; failsoft without its breaker"
	ModeFlaky      = "3% flakiness at ~1,000 calls/s"
	// ModeFleetOverload is the overload of every backend of three at once,
	// each shedding its excess as plain UNAVAILABLE.
	ModeFleetOverload = "1.5x overload of all 3 backends, rejected as UNAVAILABLE"
)

// ModeOverload names the overload mode whose rejections are sent as r.
func ModeOverload(r Reject) string { return "1.5x overload, rejected as " + r.String() }

// Modes returns the failure modes in the order the table shows them.
func Modes() []Mode {
	success := func(limit float64) Figure {
		return Figure{"success", successCell, fmt.Sprintf("≥ %s", pctf(limit)),
			func(o Outcome, _ Refs) (bool, bool) { return o.Success() >= limit, o.Calls > 0 }}
	}
	attempts := func(limit float64) Figure {
		return Figure{"attempts per call", attemptsCell, fmt.Sprintf("≤ %.2f", limit),
			func(o Outcome, _ Refs) (bool, bool) { return o.AttemptsPerCall() <= limit, o.Calls > 0 }}
	}
	ms := []Mode{
		{
			Name: ModeTransient, Setup: LibraryDefaults,
			run: func(ctx context.Context, spec Spec, cfg Config, _ int) (Outcome, error) {
				return closedMode(ctx, spec, cfg, cfg.TransientCalls, callRead, Faults{FailRate: cfg.TransientRate, Seed: cfg.Seed})
			},
			Figures: []Figure{
				{"success", successCell, fmt.Sprintf("within %.1f point of the best retrying peer", 100*goalTransientGap),
					func(o Outcome, r Refs) (bool, bool) {
						return o.Success() >= r.Best-goalTransientGap-1e-9, o.Calls > 0 && r.Best >= 0
					}},
				attempts(goalTransientAttempts),
			},
		},
		{
			Name: ModeBadFailing, Setup: LibraryDefaults,
			run: func(ctx context.Context, spec Spec, cfg Config, _ int) (Outcome, error) {
				return closedMode(ctx, spec, cfg, cfg.BadBackendCalls, callRead, Faults{FailRate: 1, Seed: cfg.Seed}, Faults{}, Faults{})
			},
			Figures: []Figure{success(goalBadSuccess), attempts(goalBadAttempts)},
		},
		{
			Name: ModeBadLate, Setup: LibraryDefaults,
			run: func(ctx context.Context, spec Spec, cfg Config, _ int) (Outcome, error) {
				return closedMode(ctx, spec, cfg, cfg.BadBackendCalls, callRead, Faults{Fast: cfg.Late}, Faults{}, Faults{})
			},
			Figures: []Figure{success(goalBadSuccess), attempts(goalBadAttempts),
				{Name: "p90 latency", Cell: func(o Outcome, _ Refs) string { return msCell(o.P90) }}},
		},
		{
			Name: ModeLost, Setup: LibraryDefaults,
			run: runLost,
			Figures: []Figure{
				{"OK", successCell, fmt.Sprintf("≥ %s", pctf(goalLostOK)),
					func(o Outcome, _ Refs) (bool, bool) { return o.Success() >= goalLostOK, o.Calls > 0 }},
				{"duplicate charges", func(o Outcome, _ Refs) string { return fmt.Sprint(o.Duplicates) }, "0",
					func(o Outcome, _ Refs) (bool, bool) { return o.Duplicates == 0, o.Calls > 0 }},
				{"failed but committed", func(o Outcome, _ Refs) string {
					return fmt.Sprintf("%d (%s)", o.FailedCommitted, pctf(ratio(o.FailedCommitted, o.Calls)))
				}, fmt.Sprintf("≤ %s", pctf(goalFailedCommitted)),
					func(o Outcome, _ Refs) (bool, bool) {
						return ratio(o.FailedCommitted, o.Calls) <= goalFailedCommitted, o.Calls > 0
					}},
			},
		},
	}
	for _, rej := range []Reject{RejectExhausted, RejectPushback, RejectUnavailable} {
		ms = append(ms, Mode{
			Name: ModeOverload(rej), Setup: LibraryDefaults,
			Rounds: func(cfg Config) int { return max(1, cfg.OverloadRounds) },
			run: func(ctx context.Context, spec Spec, cfg Config, round int) (Outcome, error) {
				return runOverload(ctx, spec, cfg, rej, round)
			},
			Figures: overloadFigures,
		})
	}
	ms = append(ms,
		Mode{
			Name: ModeFleetOverload, Setup: LibraryDefaults,
			Rounds: func(cfg Config) int { return max(1, cfg.OverloadRounds) },
			run: func(ctx context.Context, spec Spec, cfg Config, round int) (Outcome, error) {
				return runFleetOverload(ctx, spec, cfg, round)
			},
			Figures: overloadFigures,
		},
		Mode{
			Name: ModeOutage, Setup: LibraryDefaults,
			run:     runRecovery,
			Figures: recoveryFigures(goalOutageBreaker),
		},
		Mode{
			Name: ModeOutageOff, Setup: NoBreaker, FailsoftOnly: true,
			run:     runRecovery,
			Figures: recoveryFigures(goalOutageNoBreaker),
		},
		Mode{
			Name: ModeFlaky, Setup: ReadmeBreaker,
			run: func(ctx context.Context, spec Spec, cfg Config, _ int) (Outcome, error) {
				return runOpen(ctx, spec, cfg, cfg.FlakyCallRate, cfg.FlakyCalls, 0, Faults{FailRate: cfg.FlakyRate, Seed: cfg.Seed})
			},
			Figures: []Figure{
				{Name: "success", Cell: successCell},
				{Name: "attempts per call", Cell: attemptsCell},
				{"breaker opens", func(o Outcome, _ Refs) string { return opensCell(o.Opens) }, "never",
					func(o Outcome, _ Refs) (bool, bool) { return o.Opens <= 0, o.Calls > 0 }},
			},
		},
	)
	return ms
}

var overloadFigures = []Figure{
	{"goodput/s (of the plain client's)", func(o Outcome, r Refs) string {
		s := fmt.Sprintf("%.0f", o.Goodput())
		if r.Plain != nil && r.Plain.Goodput() > 0 {
			s += fmt.Sprintf(" (%.0f%%)", 100*o.Goodput()/r.Plain.Goodput())
		}
		return s
	}, fmt.Sprintf("≥ %.0f%% of the plain client's", 100*goalGoodput),
		func(o Outcome, r Refs) (bool, bool) {
			if r.Plain == nil || r.Plain.Goodput() == 0 || o.Calls == 0 {
				return false, false
			}
			return o.Goodput() >= goalGoodput*r.Plain.Goodput(), true
		}},
	{"attempts at server per call offered", func(o Outcome, _ Refs) string { return fmt.Sprintf("%.2fx", o.AttemptsPerCall()) },
		fmt.Sprintf("≤ %.1fx", goalAmplification),
		func(o Outcome, _ Refs) (bool, bool) { return o.AttemptsPerCall() <= goalAmplification, o.Calls > 0 }},
	{Name: "breaker opens", Cell: func(o Outcome, _ Refs) string { return opensCell(o.Opens) }},
}

func recoveryFigures(outageLimit float64) []Figure {
	return []Figure{
		{"attempts per call during the outage", func(o Outcome, _ Refs) string {
			return fmt.Sprintf("%.3f", ratio(o.Recovery.DownAttempts, o.Recovery.DownCalls))
		}, fmt.Sprintf("≤ %.2f", outageLimit),
			func(o Outcome, _ Refs) (bool, bool) {
				return ratio(o.Recovery.DownAttempts, o.Recovery.DownCalls) <= outageLimit, o.Recovery.DownCalls > 0
			}},
		{Name: "success in the first second after the heal", Cell: func(o Outcome, _ Refs) string {
			return pct(o.Recovery.SoonOK, o.Recovery.SoonCalls)
		}},
		{"success from 1 s after the heal", func(o Outcome, _ Refs) string {
			return pct(o.Recovery.LaterOK, o.Recovery.LaterCalls)
		}, fmt.Sprintf("≥ %s", pctf(goalRecovered)),
			func(o Outcome, _ Refs) (bool, bool) {
				return ratio(o.Recovery.LaterOK, o.Recovery.LaterCalls) >= goalRecovered, o.Recovery.LaterCalls > 0
			}},
		{"last failure after the heal", func(o Outcome, _ Refs) string {
			if !o.Recovery.Failed {
				return "none"
			}
			return msCell(o.Recovery.LastFailure)
		}, "within 1 s",
			func(o Outcome, _ Refs) (bool, bool) {
				return !o.Recovery.Failed || o.Recovery.LastFailure <= recoveryWindow, o.Calls > 0
			}},
	}
}

// closedMode makes n logical calls with cfg.Workers callers against one
// server for each of faults (round_robin over them when several).
func closedMode(ctx context.Context, spec Spec, cfg Config, n int, call callFunc, faults ...Faults) (Outcome, error) {
	e, err := newEnv(spec, cfg.Params, faults...)
	if err != nil {
		return Outcome{}, err
	}
	defer e.close()
	e.warm(ctx)
	before := e.attempts()
	recs := closedLoop(ctx, e, n, cfg.Workers, cfg.Params.Timeout, call)
	return Outcome{
		Calls:    len(recs),
		OK:       succeeded(recs),
		Attempts: e.attempts() - before,
		P90:      quantile(latencies(recs), 0.9),
		Opens:    e.opens(),
	}, nil
}

// runLost charges under the README's Charge policy while responses are
// lost after the charge committed.
func runLost(ctx context.Context, spec Spec, cfg Config, _ int) (Outcome, error) {
	e, err := newEnv(spec, cfg.Params, Faults{LostRate: cfg.LostRate, Seed: cfg.Seed})
	if err != nil {
		return Outcome{}, err
	}
	defer e.close()
	e.warm(ctx)
	before := e.attempts()
	recs := closedLoop(ctx, e, cfg.LostCalls, cfg.Workers, cfg.Params.Timeout, callCharge)
	_, dups := e.srvs[0].Ledger()
	o := Outcome{Calls: len(recs), OK: succeeded(recs), Attempts: e.attempts() - before, Duplicates: dups, Opens: e.opens()}
	for i, r := range recs {
		if !r.OK && e.srvs[0].Charges(callID(i)) > 0 {
			o.FailedCommitted++
		}
	}
	return o, nil
}

// runOpen offers n reads at rate per second (Poisson arrivals, drawn from
// the seed and round) to one server with faults f.
func runOpen(ctx context.Context, spec Spec, cfg Config, rate float64, n, round int, faults ...Faults) (Outcome, error) {
	e, err := newEnv(spec, cfg.Params, faults...)
	if err != nil {
		return Outcome{}, err
	}
	defer e.close()
	e.warm(ctx)
	before := e.attempts()
	recs, window := openLoop(ctx, e, time.Now(), rate, n, arrivals(cfg.Seed, round), cfg.Params.Timeout, callRead)
	return Outcome{Calls: len(recs), OK: succeeded(recs), Attempts: e.attempts() - before, Window: window, Opens: e.opens()}, nil
}

func arrivals(seed uint64, round int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6f7665726c6f6164+uint64(round)))
}

// runOverload offers Load times the capacity of a server that rejects the
// excess as rej, for one round of OverloadDuration.
func runOverload(ctx context.Context, spec Spec, cfg Config, rej Reject, round int) (Outcome, error) {
	capacity := float64(cfg.Capacity) / cfg.Service.Seconds()
	rate := cfg.Load * capacity
	d := cfg.OverloadDuration / time.Duration(max(1, cfg.OverloadRounds))
	f := Faults{Capacity: cfg.Capacity, Service: cfg.Service, Reject: rej, Pushback: cfg.Pushback, Seed: cfg.Seed + uint64(round)}
	return runOpen(ctx, spec, cfg, rate, int(rate*d.Seconds()), round, f)
}

// runFleetOverload offers Load times the capacity of FleetSize servers
// behind round_robin, each rejecting its excess as plain UNAVAILABLE: an
// overload of the whole fleet, which no backend may be ejected for (the
// others would take its share), for one round of OverloadDuration.
func runFleetOverload(ctx context.Context, spec Spec, cfg Config, round int) (Outcome, error) {
	capacity := float64(cfg.Capacity) / cfg.Service.Seconds()
	rate := cfg.Load * capacity * FleetSize
	d := cfg.OverloadDuration / time.Duration(max(1, cfg.OverloadRounds))
	faults := make([]Faults, FleetSize)
	for i := range faults {
		faults[i] = Faults{Capacity: cfg.Capacity, Service: cfg.Service, Reject: RejectUnavailable,
			Seed: cfg.Seed + uint64(round)*FleetSize + uint64(i)}
	}
	return runOpen(ctx, spec, cfg, rate, int(rate*d.Seconds()), round, faults...)
}

// FleetSize is how many backends the fleet-wide overload mode runs.
const FleetSize = 3

// runRecovery offers reads at OutageRate to a server that is down for
// OutageDown and then healthy for OutageAfter.
func runRecovery(ctx context.Context, spec Spec, cfg Config, _ int) (Outcome, error) {
	e, err := newEnv(spec, cfg.Params, Faults{Seed: cfg.Seed})
	if err != nil {
		return Outcome{}, err
	}
	defer e.close()
	e.warm(ctx)
	srv := e.srvs[0]
	srv.SetOutage(true)
	before := e.attempts()
	type healed struct {
		at       time.Duration
		attempts int
	}
	heal := make(chan healed, 1)
	start := time.Now()
	t := time.AfterFunc(cfg.OutageDown, func() {
		h := healed{time.Since(start), e.attempts() - before}
		srv.SetOutage(false)
		heal <- h
	})
	defer t.Stop()
	n := int(cfg.OutageRate * (cfg.OutageDown + cfg.OutageAfter).Seconds())
	recs, window := openLoop(ctx, e, start, cfg.OutageRate, n, arrivals(cfg.Seed, 0), cfg.Params.Timeout, callRead)
	o := Outcome{Calls: len(recs), OK: succeeded(recs), Attempts: e.attempts() - before, Window: window, Opens: e.opens()}
	select {
	case h := <-heal:
		o.Recovery = recoveryOf(recs, h.at, h.attempts)
	default:
		return o, fmt.Errorf("the loop ended before the server healed")
	}
	return o, nil
}

// refs finds the references of a mode's figures among the rows.
func refs(rows []Row, mode string) Refs {
	r := Refs{Best: -1}
	for i := range rows {
		o, ok := rows[i].Modes[mode]
		if !ok || o.Calls == 0 {
			continue
		}
		switch rows[i].Name {
		case "plain client":
			r.Plain = &o
		case Failsoft:
		default:
			if s := o.Success(); s > r.Best {
				r.Best, r.BestName = s, rows[i].Name
			}
		}
	}
	return r
}

// ModeGoals checks failsoft's row against the goals of every failure
// mode the run measured.
func ModeGoals(rows []Row) []Goal {
	var fs *Row
	for i := range rows {
		if rows[i].Name == Failsoft {
			fs = &rows[i]
		}
	}
	if fs == nil {
		return nil
	}
	var gs []Goal
	for _, m := range Modes() {
		o, ok := fs.Modes[m.Name]
		if !ok {
			continue
		}
		ref := refs(rows, m.Name)
		for _, f := range m.Figures {
			if f.Met == nil {
				continue
			}
			met, measured := f.Met(o, ref)
			if !measured {
				continue
			}
			gs = append(gs, Goal{m.Name + ", " + f.Name + ": " + f.Goal, f.Cell(o, ref), met})
		}
	}
	return gs
}

// successCell is the success rate, and the breaker's opens when it opened.
func successCell(o Outcome, _ Refs) string {
	s := pct(o.OK, o.Calls)
	switch {
	case o.Opens == 1:
		s += " (breaker opened once)"
	case o.Opens > 1:
		s += fmt.Sprintf(" (breaker opened %d times)", o.Opens)
	}
	return s
}

func attemptsCell(o Outcome, _ Refs) string { return fmt.Sprintf("%.2f", o.AttemptsPerCall()) }

func opensCell(n int64) string {
	if n < 0 {
		return "no breaker"
	}
	return fmt.Sprint(n)
}

func msCell(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// pctf formats a fraction as a percentage with at most one decimal.
func pctf(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64) + "%"
}
