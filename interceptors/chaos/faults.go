package chaos

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/policy"
)

// Faults are the faults injected into the calls a [Rule] matches. The
// zero value injects nothing.
type Faults struct {
	// ErrorRate is the fraction of calls failed before the handler runs
	// (on a client: before the call is sent), in [0, 1].
	ErrorRate float64
	// ErrorCodes are the codes of injected errors, picked at random;
	// UNAVAILABLE when empty.
	ErrorCodes []codes.Code
	// Latency is added to every call before it runs.
	Latency time.Duration
	// SlowLatency is added on top of Latency to a SlowFraction of calls.
	SlowLatency  time.Duration
	SlowFraction float64
	// The service is down (every call fails with UNAVAILABLE) for
	// OutageFor at the start of every OutageEvery, counted from when the
	// rules were set.
	OutageEvery, OutageFor time.Duration
	// Down fails every call with UNAVAILABLE.
	Down bool
	// LostRate is the fraction of successful calls whose response is lost:
	// the work was done, but the client sees UNAVAILABLE.
	LostRate float64
	// PushbackRate is the fraction of calls refused with
	// RESOURCE_EXHAUSTED and a grpc-retry-pushback-ms trailer of Pushback.
	PushbackRate float64
	Pushback     time.Duration
}

// Validate reports every bad setting, naming each.
func (f *Faults) Validate() error {
	var errs []error
	rate := func(name string, v float64) {
		if !(v >= 0 && v <= 1) { // also catches NaN
			errs = append(errs, fmt.Errorf("failsoft: chaos: %s %v is outside [0, 1]", name, v))
		}
	}
	dur := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("failsoft: chaos: %s %v is negative", name, d))
		}
	}
	rate("error_rate", f.ErrorRate)
	rate("slow_fraction", f.SlowFraction)
	rate("lost_rate", f.LostRate)
	rate("pushback_rate", f.PushbackRate)
	if f.ErrorRate <= 1 && f.PushbackRate <= 1 && f.ErrorRate+f.PushbackRate > 1 {
		errs = append(errs, fmt.Errorf("failsoft: chaos: error_rate %v plus pushback_rate %v exceeds 1", f.ErrorRate, f.PushbackRate))
	}
	dur("latency", f.Latency)
	dur("slow_latency", f.SlowLatency)
	dur("outage_every", f.OutageEvery)
	dur("outage_for", f.OutageFor)
	dur("pushback", f.Pushback)
	if f.OutageFor > 0 && f.OutageEvery <= 0 {
		errs = append(errs, fmt.Errorf("failsoft: chaos: outage_for %v needs a positive outage_every", f.OutageFor))
	}
	if f.OutageEvery > 0 && f.OutageFor > f.OutageEvery {
		errs = append(errs, fmt.Errorf("failsoft: chaos: outage_for %v is longer than outage_every %v", f.OutageFor, f.OutageEvery))
	}
	for _, c := range f.ErrorCodes {
		if c == codes.OK || c > codes.Unauthenticated {
			errs = append(errs, fmt.Errorf("failsoft: chaos: error_codes: %v is not an error code", c))
		}
	}
	return errors.Join(errs...)
}

// String summarises the faults, "healthy" for none.
func (f Faults) String() string {
	var parts []string
	if f.Down {
		parts = append(parts, "DOWN")
	}
	if f.ErrorRate > 0 {
		parts = append(parts, fmt.Sprintf("errors %.0f%% %s", 100*f.ErrorRate, codeList(f.ErrorCodes)))
	}
	if f.Latency > 0 {
		parts = append(parts, fmt.Sprintf("latency %v", f.Latency))
	}
	if f.SlowFraction > 0 && f.SlowLatency > 0 {
		parts = append(parts, fmt.Sprintf("%.0f%% slowed by %v", 100*f.SlowFraction, f.SlowLatency))
	}
	if f.OutageFor > 0 {
		parts = append(parts, fmt.Sprintf("down %v every %v", f.OutageFor, f.OutageEvery))
	}
	if f.LostRate > 0 {
		parts = append(parts, fmt.Sprintf("lost responses %.0f%%", 100*f.LostRate))
	}
	if f.PushbackRate > 0 {
		parts = append(parts, fmt.Sprintf("pushback %.0f%% (%v)", 100*f.PushbackRate, f.Pushback))
	}
	if len(parts) == 0 {
		return "healthy"
	}
	return strings.Join(parts, ", ")
}

// Rule applies Faults to the calls whose method matches Match:
//
//	"*"                      every call
//	"/pkg.Service/*"         every method of a service
//	"/pkg.Service/Method"    one method
type Rule struct {
	Match string
	Faults
}

func (r *Rule) matches(fullMethod string) bool {
	if r.Match == "*" {
		return true
	}
	if service, ok := strings.CutSuffix(r.Match, "*"); ok {
		return strings.HasPrefix(fullMethod, service)
	}
	return fullMethod == r.Match
}

func validMatch(m string) bool {
	if m == "*" {
		return true
	}
	service, method, ok := policy.SplitMethod(m)
	return ok && !strings.ContainsAny(service, "*/") &&
		(method == "*" || !strings.Contains(method, "*"))
}

// Config is what an [Injector] does. The first rule that matches a call
// decides its faults; a call no rule matches runs untouched. Nothing is
// injected unless Enabled is set.
type Config struct {
	Enabled bool
	Rules   []Rule
}

// Validate reports every bad rule, naming it.
func (c *Config) Validate() error {
	var errs []error
	for i := range c.Rules {
		r := &c.Rules[i]
		if !validMatch(r.Match) {
			errs = append(errs, fmt.Errorf("failsoft: chaos: rule %d: match %q is not \"*\", \"/pkg.Service/*\" or \"/pkg.Service/Method\"", i, r.Match))
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("rule %d (%s): %w", i, r.Match, err))
		}
	}
	return errors.Join(errs...)
}

// String summarises the config, one rule after the other.
func (c Config) String() string {
	if !c.Enabled {
		return "off"
	}
	if len(c.Rules) == 0 {
		return "on, no rules"
	}
	parts := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		parts[i] = r.Match + ": " + r.Faults.String()
	}
	return strings.Join(parts, "; ")
}

// codeName is the canonical name of c, such as "UNAVAILABLE".
func codeName(c codes.Code) string {
	return strings.Trim(policy.Codes(c).String(), "[]")
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
