package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/failsoft/failsoft/interceptors/policy"
)

// The JSON form of a Config, as the control endpoint reads and writes it:
//
//	{"enabled": true, "rules": [
//	  {"match": "/payments.v1.PaymentService/Charge", "lost_rate": 0.2},
//	  {"match": "*", "error_rate": 0.05, "error_codes": ["UNAVAILABLE"], "latency": "20ms"}
//	]}
//
// Durations are Go duration strings, codes their canonical names.
type wireConfig struct {
	Enabled bool       `json:"enabled"`
	Rules   []wireRule `json:"rules"`
}

type wireRule struct {
	Match        string   `json:"match"`
	ErrorRate    float64  `json:"error_rate,omitempty"`
	ErrorCodes   []string `json:"error_codes,omitempty"`
	Latency      string   `json:"latency,omitempty"`
	SlowLatency  string   `json:"slow_latency,omitempty"`
	SlowFraction float64  `json:"slow_fraction,omitempty"`
	OutageEvery  string   `json:"outage_every,omitempty"`
	OutageFor    string   `json:"outage_for,omitempty"`
	Down         bool     `json:"down,omitempty"`
	LostRate     float64  `json:"lost_rate,omitempty"`
	PushbackRate float64  `json:"pushback_rate,omitempty"`
	Pushback     string   `json:"pushback,omitempty"`
}

// MarshalJSON writes the form ParseConfig reads.
func (c Config) MarshalJSON() ([]byte, error) {
	w := wireConfig{Enabled: c.Enabled, Rules: make([]wireRule, len(c.Rules))}
	d := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return v.String()
	}
	for i, r := range c.Rules {
		f := r.Faults
		var names []string
		for _, code := range f.ErrorCodes {
			names = append(names, codeName(code))
		}
		w.Rules[i] = wireRule{
			Match: r.Match, ErrorRate: f.ErrorRate, ErrorCodes: names, Latency: d(f.Latency),
			SlowLatency: d(f.SlowLatency), SlowFraction: f.SlowFraction, OutageEvery: d(f.OutageEvery),
			OutageFor: d(f.OutageFor), Down: f.Down, LostRate: f.LostRate, PushbackRate: f.PushbackRate,
			Pushback: d(f.Pushback),
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the form MarshalJSON writes, refusing unknown
// fields, and validates the result.
func (c *Config) UnmarshalJSON(data []byte) error {
	parsed, err := ParseConfig(data)
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// ParseConfig parses and validates a Config in its JSON form. The error
// names every bad field.
func ParseConfig(data []byte) (Config, error) {
	var w wireConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Config{}, fmt.Errorf("failsoft: chaos: bad config: %w", err)
	}
	if dec.More() {
		return Config{}, errors.New("failsoft: chaos: bad config: data after the object")
	}
	c := Config{Enabled: w.Enabled, Rules: make([]Rule, len(w.Rules))}
	var errs []error
	for i, wr := range w.Rules {
		dur := func(name, s string, dst *time.Duration) {
			if s == "" {
				return
			}
			d, err := time.ParseDuration(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("failsoft: chaos: rule %d: %s: %w", i, name, err))
			}
			*dst = d
		}
		r := Rule{Match: wr.Match, Faults: Faults{
			ErrorRate: wr.ErrorRate, SlowFraction: wr.SlowFraction, Down: wr.Down,
			LostRate: wr.LostRate, PushbackRate: wr.PushbackRate,
		}}
		dur("latency", wr.Latency, &r.Latency)
		dur("slow_latency", wr.SlowLatency, &r.SlowLatency)
		dur("outage_every", wr.OutageEvery, &r.OutageEvery)
		dur("outage_for", wr.OutageFor, &r.OutageFor)
		dur("pushback", wr.Pushback, &r.Pushback)
		for _, name := range wr.ErrorCodes {
			code, err := policy.ParseCode(name)
			if err != nil {
				errs = append(errs, fmt.Errorf("failsoft: chaos: rule %d: error_codes: %w", i, err))
				continue
			}
			r.ErrorCodes = append(r.ErrorCodes, code)
		}
		c.Rules[i] = r
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
