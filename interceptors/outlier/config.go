package outlier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/serviceconfig"
)

// Name is the name the policy is registered under, the key of its object
// in a service config's loadBalancingConfig.
const Name = "failsoft_outlier"

// Config is the policy's configuration: the JSON object under Name in a
// loadBalancingConfig, every field optional. Durations are JSON strings
// such as "10s" or "250ms".
//
//	{
//	  "interval": "1s",
//	  "baseEjectionTime": "10s",
//	  "maxEjectionTime": "120s",
//	  "maxEjectionPercent": 50,
//	  "consecutiveFailures": 5,
//	  "failureRateEjection": {"threshold": 50, "minimumCalls": 10},
//	  "latencyEjection": {"ratio": 3, "minimumCalls": 10, "minimumLatency": "10ms"},
//	  "childPolicy": [{"round_robin": {}}]
//	}
//
// The values shown are the defaults. A zero consecutiveFailures, failure
// threshold or latency ratio switches that rule off.
type Config struct {
	// Interval is how often the failure-rate and latency rules are
	// evaluated; the failure rate is counted over one interval.
	Interval time.Duration
	// BaseEjectionTime is how long an endpoint is ejected the first time;
	// each further ejection in a row lasts one BaseEjectionTime longer.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection's length (but never below
	// BaseEjectionTime).
	MaxEjectionTime time.Duration
	// MaxEjectionPercent bounds the share of endpoints ejected at once. At
	// least one endpoint always stays, and, unless it is 0, one endpoint
	// may always be ejected when there are two or more.
	MaxEjectionPercent int
	// ConsecutiveFailures ejects an endpoint at once when that many calls
	// in a row failed on it, and most of its siblings did better (see the
	// package documentation).
	ConsecutiveFailures int
	// FailureThreshold ejects an endpoint whose failures in an interval
	// are at least this percentage of its calls that succeeded or failed,
	// when they were at least FailureMinimumCalls, and most of its siblings
	// did better.
	FailureThreshold    int
	FailureMinimumCalls int
	// LatencyRatio ejects an endpoint whose median latency over its recent
	// successful calls (at least LatencyMinimumCalls of them) is at least
	// LatencyRatio times the median of its siblings' medians and at least
	// MinimumLatency.
	LatencyRatio        float64
	LatencyMinimumCalls int
	MinimumLatency      time.Duration

	// ChildPolicy is the child's loadBalancingConfig, as JSON.
	ChildPolicy json.RawMessage
}

// Defaults.
const (
	defaultInterval            = time.Second
	defaultBaseEjectionTime    = 10 * time.Second
	defaultMaxEjectionTime     = 120 * time.Second
	defaultMaxEjectionPercent  = 50
	defaultConsecutiveFailures = 5
	defaultFailureThreshold    = 50
	defaultMinimumCalls        = 10
	defaultLatencyRatio        = 3
	defaultMinimumLatency      = 10 * time.Millisecond
	defaultChildPolicy         = `[{"round_robin":{}}]`

	// latencySamples is how many recent successful calls of an endpoint
	// its median latency is taken over.
	latencySamples = 32
)

// DefaultConfig returns the configuration an empty JSON object gives.
func DefaultConfig() Config {
	return Config{
		Interval:            defaultInterval,
		BaseEjectionTime:    defaultBaseEjectionTime,
		MaxEjectionTime:     defaultMaxEjectionTime,
		MaxEjectionPercent:  defaultMaxEjectionPercent,
		ConsecutiveFailures: defaultConsecutiveFailures,
		FailureThreshold:    defaultFailureThreshold,
		FailureMinimumCalls: defaultMinimumCalls,
		LatencyRatio:        defaultLatencyRatio,
		LatencyMinimumCalls: defaultMinimumCalls,
		MinimumLatency:      defaultMinimumLatency,
		ChildPolicy:         json.RawMessage(defaultChildPolicy),
	}
}

// Around returns a loadBalancingConfig (a JSON list) that runs the policy
// with its defaults around lb, itself a loadBalancingConfig such as
// `[{"round_robin":{}}]`. A list whose first entry is already this policy
// is returned as it is.
func Around(lb string) string {
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(lb), &entries); err == nil && len(entries) > 0 {
		if _, ok := entries[0][Name]; ok {
			return lb
		}
	}
	return `[{"` + Name + `":{"childPolicy":` + lb + `}}]`
}

// jsonConfig is Config as it is written; nil fields take the defaults.
type jsonConfig struct {
	Interval            *string         `json:"interval"`
	BaseEjectionTime    *string         `json:"baseEjectionTime"`
	MaxEjectionTime     *string         `json:"maxEjectionTime"`
	MaxEjectionPercent  *int            `json:"maxEjectionPercent"`
	ConsecutiveFailures *int            `json:"consecutiveFailures"`
	FailureRate         *jsonRate       `json:"failureRateEjection"`
	Latency             *jsonLatency    `json:"latencyEjection"`
	ChildPolicy         json.RawMessage `json:"childPolicy"`
}

type jsonRate struct {
	Threshold    *int `json:"threshold"`
	MinimumCalls *int `json:"minimumCalls"`
}

type jsonLatency struct {
	Ratio          *float64 `json:"ratio"`
	MinimumCalls   *int     `json:"minimumCalls"`
	MinimumLatency *string  `json:"minimumLatency"`
}

// lbConfig is the parsed configuration grpc-go hands the balancer: the
// Config and the child's name and parsed configuration.
type lbConfig struct {
	serviceconfig.LoadBalancingConfig
	Config
	childName   string
	childConfig serviceconfig.LoadBalancingConfig
}

// ParseConfig parses and validates the policy's JSON configuration. Its
// errors name the field at fault.
func ParseConfig(js []byte) (Config, error) {
	c, err := parse(js)
	if err != nil {
		return Config{}, err
	}
	return c.Config, nil
}

func parse(js []byte) (*lbConfig, error) {
	var j jsonConfig
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("failsoft: outlier: config %s: %v", truncate(js), err)
	}
	c := &lbConfig{Config: DefaultConfig()}
	var errs []error
	duration := func(field string, s *string, dst *time.Duration) {
		if s == nil {
			return
		}
		d, err := time.ParseDuration(*s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("failsoft: outlier: %s: want a positive duration such as \"10s\", got %q", field, *s))
			return
		}
		*dst = d
	}
	count := func(field string, v *int, dst *int, lo, hi int) {
		if v == nil {
			return
		}
		if *v < lo || *v > hi {
			errs = append(errs, fmt.Errorf("failsoft: outlier: %s: want %d to %d, got %d", field, lo, hi, *v))
			return
		}
		*dst = *v
	}
	const many = 1 << 30
	duration("interval", j.Interval, &c.Interval)
	duration("baseEjectionTime", j.BaseEjectionTime, &c.BaseEjectionTime)
	duration("maxEjectionTime", j.MaxEjectionTime, &c.MaxEjectionTime)
	count("maxEjectionPercent", j.MaxEjectionPercent, &c.MaxEjectionPercent, 0, 100)
	count("consecutiveFailures", j.ConsecutiveFailures, &c.ConsecutiveFailures, 0, many)
	if r := j.FailureRate; r != nil {
		count("failureRateEjection.threshold", r.Threshold, &c.FailureThreshold, 0, 100)
		count("failureRateEjection.minimumCalls", r.MinimumCalls, &c.FailureMinimumCalls, 1, many)
	}
	if l := j.Latency; l != nil {
		if l.Ratio != nil {
			if r := *l.Ratio; r != 0 && !(r > 1 && r < 1e6) {
				errs = append(errs, fmt.Errorf("failsoft: outlier: latencyEjection.ratio: want 0 (off) or more than 1, got %v", r))
			} else {
				c.LatencyRatio = r
			}
		}
		count("latencyEjection.minimumCalls", l.MinimumCalls, &c.LatencyMinimumCalls, 1, latencySamples)
		duration("latencyEjection.minimumLatency", l.MinimumLatency, &c.MinimumLatency)
	}
	if len(j.ChildPolicy) > 0 && string(j.ChildPolicy) != "null" {
		c.ChildPolicy = j.ChildPolicy
	}
	name, cfg, err := parseChild(c.ChildPolicy)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.childName, c.childConfig = name, cfg
	return c, nil
}

// parseChild picks the first registered policy of a loadBalancingConfig
// list and parses its configuration, as grpc-go does for its own parents.
func parseChild(js json.RawMessage) (string, serviceconfig.LoadBalancingConfig, error) {
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(js, &entries); err != nil || len(entries) == 0 {
		return "", nil, fmt.Errorf("failsoft: outlier: childPolicy: want a JSON list of one-key objects such as %s, got %s", defaultChildPolicy, truncate(js))
	}
	var names []string
	for _, e := range entries {
		if len(e) != 1 {
			return "", nil, fmt.Errorf("failsoft: outlier: childPolicy: each entry must have exactly one key, got %s", truncate(js))
		}
		for name, raw := range e {
			b := balancer.Get(name)
			if b == nil {
				names = append(names, name)
				continue
			}
			if name == Name {
				return "", nil, errors.New("failsoft: outlier: childPolicy: " + Name + " cannot be its own child")
			}
			p, ok := b.(balancer.ConfigParser)
			if !ok {
				return name, nil, nil
			}
			if len(raw) == 0 || string(raw) == "null" {
				raw = json.RawMessage("{}")
			}
			cfg, err := p.ParseConfig(raw)
			if err != nil {
				return "", nil, fmt.Errorf("failsoft: outlier: childPolicy %q: %w", name, err)
			}
			return name, cfg, nil
		}
	}
	return "", nil, fmt.Errorf("failsoft: outlier: childPolicy: no registered policy among %q", names)
}

// truncate keeps error messages about large configs readable.
func truncate(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
