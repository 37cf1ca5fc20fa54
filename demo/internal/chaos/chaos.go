package chaos

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Config is one set of chaos settings. The zero value injects nothing.
type Config struct {
	// ErrorRate is the fraction of calls failed before the handler, in [0, 1].
	ErrorRate float64
	// ErrorCodes are the codes injected errors carry, picked at random;
	// UNAVAILABLE when empty.
	ErrorCodes []codes.Code
	// Latency is added to every call.
	Latency time.Duration
	// SlowLatency is added on top of Latency to a SlowFraction of calls.
	SlowLatency  time.Duration
	SlowFraction float64
	// The server is down for OutageFor at the start of every OutageEvery,
	// counted from when the settings were applied.
	OutageEvery, OutageFor time.Duration
	// Down fails every call with UNAVAILABLE until cleared.
	Down bool
	// LostRate is the fraction of successful calls to methods with side
	// effects whose response is dropped after the handler committed: the
	// client sees UNAVAILABLE although the money moved.
	LostRate float64
	// PushbackRate is the fraction of calls refused with RESOURCE_EXHAUSTED
	// and a grpc-retry-pushback-ms trailer of Pushback.
	PushbackRate float64
	Pushback     time.Duration
}

// Validate reports every bad setting, naming each.
func (c *Config) Validate() error {
	var errs []error
	rate := func(name string, v float64) {
		if !(v >= 0 && v <= 1) { // also catches NaN
			errs = append(errs, fmt.Errorf("chaos: %s %v is outside [0, 1]", name, v))
		}
	}
	dur := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("chaos: %s %v is negative", name, d))
		}
	}
	rate("error-rate", c.ErrorRate)
	rate("slow-fraction", c.SlowFraction)
	rate("lost-rate", c.LostRate)
	rate("pushback-rate", c.PushbackRate)
	if c.ErrorRate <= 1 && c.PushbackRate <= 1 && c.ErrorRate+c.PushbackRate > 1 {
		errs = append(errs, fmt.Errorf("chaos: error-rate %v plus pushback-rate %v exceeds 1", c.ErrorRate, c.PushbackRate))
	}
	dur("latency", c.Latency)
	dur("slow-latency", c.SlowLatency)
	dur("outage-every", c.OutageEvery)
	dur("outage-for", c.OutageFor)
	dur("pushback", c.Pushback)
	if c.OutageFor > 0 && c.OutageEvery <= 0 {
		errs = append(errs, fmt.Errorf("chaos: outage-for %v needs a positive outage-every", c.OutageFor))
	}
	if c.OutageEvery > 0 && c.OutageFor > c.OutageEvery {
		errs = append(errs, fmt.Errorf("chaos: outage-for %v is longer than outage-every %v", c.OutageFor, c.OutageEvery))
	}
	for _, code := range c.ErrorCodes {
		if code == codes.OK || code > codes.Unauthenticated {
			errs = append(errs, fmt.Errorf("chaos: error-codes: %v is not an error code", code))
		}
	}
	return errors.Join(errs...)
}

func (c Config) String() string {
	var parts []string
	if c.Down {
		parts = append(parts, "DOWN")
	}
	if c.ErrorRate > 0 {
		parts = append(parts, fmt.Sprintf("errors %.0f%% %s", 100*c.ErrorRate, codeList(c.ErrorCodes)))
	}
	if c.Latency > 0 {
		parts = append(parts, fmt.Sprintf("latency %v", c.Latency))
	}
	if c.SlowFraction > 0 && c.SlowLatency > 0 {
		parts = append(parts, fmt.Sprintf("%.0f%% slowed by %v", 100*c.SlowFraction, c.SlowLatency))
	}
	if c.OutageFor > 0 {
		parts = append(parts, fmt.Sprintf("down %v every %v", c.OutageFor, c.OutageEvery))
	}
	if c.LostRate > 0 {
		parts = append(parts, fmt.Sprintf("lost responses %.0f%%", 100*c.LostRate))
	}
	if c.PushbackRate > 0 {
		parts = append(parts, fmt.Sprintf("pushback %.0f%% (%v)", 100*c.PushbackRate, c.Pushback))
	}
	if len(parts) == 0 {
		return "healthy"
	}
	return strings.Join(parts, ", ")
}

func codeList(cs []codes.Code) string {
	if len(cs) == 0 {
		return "UNAVAILABLE"
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = codeName(c)
	}
	return strings.Join(names, ",")
}

func codeName(c codes.Code) string {
	if c == codes.Canceled {
		return "CANCELLED"
	}
	// codes.Code.String gives "Unavailable"; the canonical form is used
	// everywhere else in failsoft.
	s := c.String()
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// ParseCodes parses a comma-separated list of canonical code names.
func ParseCodes(s string) ([]codes.Code, error) {
	var out []codes.Code
	for _, name := range strings.Split(s, ",") {
		if strings.TrimSpace(name) == "" {
			continue
		}
		c, err := policy.ParseCode(name)
		if err != nil {
			return nil, fmt.Errorf("chaos: error-codes: %w", err)
		}
		if c == codes.OK {
			return nil, errors.New("chaos: error-codes: OK is not an error code")
		}
		out = append(out, c)
	}
	return out, nil
}

// RegisterFlags registers the settings as flags on fs, writing into c.
// Check the result with Validate after parsing.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Float64Var(&c.ErrorRate, "error-rate", c.ErrorRate, "fraction of calls failed with an injected error, in [0, 1]")
	fs.Func("error-codes", "comma-separated status codes of injected errors (default UNAVAILABLE)", func(s string) error {
		cs, err := ParseCodes(s)
		c.ErrorCodes = cs
		return err
	})
	fs.DurationVar(&c.Latency, "latency", c.Latency, "latency added to every call")
	fs.DurationVar(&c.SlowLatency, "slow-latency", c.SlowLatency, "extra latency of the slow tail")
	fs.Float64Var(&c.SlowFraction, "slow-fraction", c.SlowFraction, "fraction of calls in the slow tail, in [0, 1]")
	fs.DurationVar(&c.OutageEvery, "outage-every", c.OutageEvery, "period of outage windows")
	fs.DurationVar(&c.OutageFor, "outage-for", c.OutageFor, "length of each outage window")
	fs.BoolVar(&c.Down, "down", c.Down, "fail every call with UNAVAILABLE")
	fs.Float64Var(&c.LostRate, "lost-rate", c.LostRate, "fraction of committed charges whose response is lost, in [0, 1]")
	fs.Float64Var(&c.PushbackRate, "pushback-rate", c.PushbackRate, "fraction of calls refused with RESOURCE_EXHAUSTED and pushback, in [0, 1]")
	fs.DurationVar(&c.Pushback, "pushback", c.Pushback, "retry delay asked of the client with pushback")
}

// wireConfig is Config as JSON: durations as Go duration strings, codes by
// name. Absent fields keep their current value on update.
type wireConfig struct {
	ErrorRate    *float64  `json:"error_rate,omitempty"`
	ErrorCodes   *[]string `json:"error_codes,omitempty"`
	Latency      *string   `json:"latency,omitempty"`
	SlowLatency  *string   `json:"slow_latency,omitempty"`
	SlowFraction *float64  `json:"slow_fraction,omitempty"`
	OutageEvery  *string   `json:"outage_every,omitempty"`
	OutageFor    *string   `json:"outage_for,omitempty"`
	Down         *bool     `json:"down,omitempty"`
	LostRate     *float64  `json:"lost_rate,omitempty"`
	PushbackRate *float64  `json:"pushback_rate,omitempty"`
	Pushback     *string   `json:"pushback,omitempty"`
	// Reset, when true, starts from the zero Config instead of the current one.
	Reset bool `json:"reset,omitempty"`
}

func toWire(c Config) wireConfig {
	d := func(v time.Duration) *string { s := v.String(); return &s }
	names := make([]string, len(c.ErrorCodes))
	for i, code := range c.ErrorCodes {
		names[i] = codeName(code)
	}
	return wireConfig{
		ErrorRate: &c.ErrorRate, ErrorCodes: &names, Latency: d(c.Latency), SlowLatency: d(c.SlowLatency),
		SlowFraction: &c.SlowFraction, OutageEvery: d(c.OutageEvery), OutageFor: d(c.OutageFor),
		Down: &c.Down, LostRate: &c.LostRate, PushbackRate: &c.PushbackRate, Pushback: d(c.Pushback),
	}
}

// apply lays w over c.
func (w *wireConfig) apply(c Config) (Config, error) {
	if w.Reset {
		c = Config{}
	}
	var errs []error
	dur := func(name string, s *string, dst *time.Duration) {
		if s == nil {
			return
		}
		d, err := time.ParseDuration(*s)
		if err != nil {
			errs = append(errs, fmt.Errorf("chaos: %s: %w", name, err))
			return
		}
		*dst = d
	}
	set := func(src *float64, dst *float64) {
		if src != nil {
			*dst = *src
		}
	}
	set(w.ErrorRate, &c.ErrorRate)
	set(w.SlowFraction, &c.SlowFraction)
	set(w.LostRate, &c.LostRate)
	set(w.PushbackRate, &c.PushbackRate)
	if w.Down != nil {
		c.Down = *w.Down
	}
	if w.ErrorCodes != nil {
		cs, err := ParseCodes(strings.Join(*w.ErrorCodes, ","))
		if err != nil {
			errs = append(errs, err)
		}
		c.ErrorCodes = cs
	}
	dur("latency", w.Latency, &c.Latency)
	dur("slow_latency", w.SlowLatency, &c.SlowLatency)
	dur("outage_every", w.OutageEvery, &c.OutageEvery)
	dur("outage_for", w.OutageFor, &c.OutageFor)
	dur("pushback", w.Pushback, &c.Pushback)
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Update is a partial change of settings, as sent to the HTTP endpoint:
// fields left nil keep their value. Build one with the helpers or by hand.
type Update = wireConfig

// ParseUpdate parses a JSON update such as
// {"error_rate":0.1,"latency":"20ms"}.
func ParseUpdate(data []byte) (*Update, error) {
	var w wireConfig
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("chaos: bad settings: %w", err)
	}
	return &w, nil
}

// UpdateFrom returns the update that sets every field to c's value.
func UpdateFrom(c Config) *Update {
	w := toWire(c)
	w.Reset = true
	return &w
}

// Counters are the faults injected so far.
type Counters struct {
	Calls    uint64            `json:"calls"`
	Errors   map[string]uint64 `json:"errors"` // by code name
	Outage   uint64            `json:"outage"`
	Slow     uint64            `json:"slow"`
	Delayed  uint64            `json:"delayed"`
	Lost     uint64            `json:"lost"`
	Pushback uint64            `json:"pushback"`
}

// Total is the number of faults injected (delays not counted).
func (c Counters) Total() uint64 {
	n := c.Outage + c.Lost + c.Pushback
	for _, v := range c.Errors {
		n += v
	}
	return n
}

// Chaos holds the current settings and counters. It is safe for concurrent
// use.
type Chaos struct {
	clk   clock.Clock
	cfg   atomic.Pointer[state]
	randM sync.Mutex
	rand  *rand.Rand

	calls, outage, slow, delayed, lost, pushback atomic.Uint64
	errs                                         [17]atomic.Uint64
}

type state struct {
	Config
	since time.Time // when applied, for outage windows
}

// New returns a Chaos with settings c, drawing its decisions from a random
// source seeded with seed, and reading time from clk (nil: system clock).
func New(c Config, seed uint64, clk clock.Clock) (*Chaos, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ch := &Chaos{clk: clock.OrSystem(clk), rand: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	ch.cfg.Store(&state{Config: c, since: ch.clk.Now()})
	return ch, nil
}

// Config returns the current settings.
func (ch *Chaos) Config() Config { return ch.cfg.Load().Config }

// Set replaces the settings after validating them.
func (ch *Chaos) Set(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	ch.cfg.Store(&state{Config: c, since: ch.clk.Now()})
	return nil
}

// Apply lays a partial update over the current settings.
func (ch *Chaos) Apply(u *Update) (Config, error) {
	c, err := u.apply(ch.Config())
	if err != nil {
		return ch.Config(), err
	}
	return c, ch.Set(c)
}

// Counters returns the faults injected so far.
func (ch *Chaos) Counters() Counters {
	c := Counters{
		Calls: ch.calls.Load(), Outage: ch.outage.Load(), Slow: ch.slow.Load(),
		Delayed: ch.delayed.Load(), Lost: ch.lost.Load(), Pushback: ch.pushback.Load(),
		Errors: map[string]uint64{},
	}
	for i := range ch.errs {
		if n := ch.errs[i].Load(); n > 0 {
			c.Errors[codeName(codes.Code(i))] = n
		}
	}
	return c
}

func (ch *Chaos) float() float64 {
	ch.randM.Lock()
	defer ch.randM.Unlock()
	return ch.rand.Float64()
}

func (ch *Chaos) intn(n int) int {
	ch.randM.Lock()
	defer ch.randM.Unlock()
	return ch.rand.IntN(n)
}
