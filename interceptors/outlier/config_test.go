package outlier

import (
	"strings"
	"testing"
	"time"

	_ "google.golang.org/grpc/balancer/leastrequest" // a child with a config of its own
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		js      string
		check   func(Config) bool
		wantErr string // a substring of the error; "" for none
	}{
		{name: "empty is the defaults", js: `{}`, check: func(c Config) bool {
			d := DefaultConfig()
			return c.Interval == d.Interval && c.BaseEjectionTime == 10*time.Second && c.ConsecutiveFailures == 5 &&
				c.FailureThreshold == 50 && c.LatencyRatio == 3 && c.MaxEjectionPercent == 50 && string(c.ChildPolicy) == defaultChildPolicy
		}},
		{name: "every field", js: `{"interval":"250ms","baseEjectionTime":"2s","maxEjectionTime":"1m","maxEjectionPercent":20,
			"consecutiveFailures":3,"failureRateEjection":{"threshold":80,"minimumCalls":4},
			"latencyEjection":{"ratio":2.5,"minimumCalls":5,"minimumLatency":"5ms"},"childPolicy":[{"pick_first":{}}]}`,
			check: func(c Config) bool {
				return c.Interval == 250*time.Millisecond && c.BaseEjectionTime == 2*time.Second && c.MaxEjectionTime == time.Minute &&
					c.MaxEjectionPercent == 20 && c.ConsecutiveFailures == 3 && c.FailureThreshold == 80 && c.FailureMinimumCalls == 4 &&
					c.LatencyRatio == 2.5 && c.LatencyMinimumCalls == 5 && c.MinimumLatency == 5*time.Millisecond
			}},
		{name: "rules off", js: `{"consecutiveFailures":0,"failureRateEjection":{"threshold":0},"latencyEjection":{"ratio":0}}`,
			check: func(c Config) bool {
				return c.ConsecutiveFailures == 0 && c.FailureThreshold == 0 && c.LatencyRatio == 0
			}},
		{name: "an unknown field is ignored", js: `{"future":1}`, check: func(c Config) bool { return c.Interval == time.Second }},
		{name: "the first registered child", js: `{"childPolicy":[{"no_such_policy":{}},{"round_robin":{}}]}`},
		{name: "not JSON", js: `{`, wantErr: "failsoft: outlier: config"},
		{name: "a number for a duration", js: `{"interval":10}`, wantErr: "failsoft: outlier: config"},
		{name: "bad duration", js: `{"baseEjectionTime":"ten"}`, wantErr: `baseEjectionTime: want a positive duration such as "10s", got "ten"`},
		{name: "negative duration", js: `{"interval":"-1s"}`, wantErr: "interval: want a positive duration"},
		{name: "percent over 100", js: `{"maxEjectionPercent":101}`, wantErr: "maxEjectionPercent: want 0 to 100, got 101"},
		{name: "negative failures", js: `{"consecutiveFailures":-1}`, wantErr: "consecutiveFailures: want 0 to"},
		{name: "threshold", js: `{"failureRateEjection":{"threshold":150}}`, wantErr: "failureRateEjection.threshold: want 0 to 100"},
		{name: "zero minimum calls", js: `{"failureRateEjection":{"minimumCalls":0}}`, wantErr: "failureRateEjection.minimumCalls: want 1 to"},
		{name: "ratio of one", js: `{"latencyEjection":{"ratio":1}}`, wantErr: "latencyEjection.ratio: want 0 (off) or more than 1, got 1"},
		{name: "more latency calls than kept", js: `{"latencyEjection":{"minimumCalls":33}}`, wantErr: "latencyEjection.minimumCalls: want 1 to 32"},
		{name: "two errors at once", js: `{"interval":"x","maxEjectionPercent":-1}`, wantErr: "maxEjectionPercent"},
		{name: "child not a list", js: `{"childPolicy":{"round_robin":{}}}`, wantErr: "childPolicy: want a JSON list"},
		{name: "child unknown", js: `{"childPolicy":[{"no_such_policy":{}}]}`, wantErr: `no registered policy among ["no_such_policy"]`},
		{name: "child entry of two keys", js: `{"childPolicy":[{"round_robin":{},"pick_first":{}}]}`, wantErr: "exactly one key"},
		{name: "itself as child", js: `{"childPolicy":[{"failsoft_outlier":{}}]}`, wantErr: "cannot be its own child"},
		{name: "child's own config is checked", js: `{"childPolicy":[{"pick_first":{"shuffleAddressList":"yes"}}]}`, wantErr: `childPolicy "pick_first"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.js))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "failsoft: outlier: ") {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil && !tc.check(c) {
				t.Fatalf("parsed %+v", c)
			}
		})
	}
}

func TestAround(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`[{"round_robin":{}}]`, `[{"failsoft_outlier":{"childPolicy":[{"round_robin":{}}]}}]`},
		{`[{"least_request_experimental":{"choiceCount":3}}]`, `[{"failsoft_outlier":{"childPolicy":[{"least_request_experimental":{"choiceCount":3}}]}}]`},
		{`[{"failsoft_outlier":{"interval":"2s"}}]`, `[{"failsoft_outlier":{"interval":"2s"}}]`},
	} {
		got := Around(tc.in)
		if got != tc.want {
			t.Errorf("Around(%s) = %s, want %s", tc.in, got, tc.want)
		}
		if _, err := ParseConfig([]byte(strings.TrimSuffix(strings.TrimPrefix(got, `[{"failsoft_outlier":`), `}]`))); err != nil {
			t.Errorf("Around(%s) does not parse: %v", tc.in, err)
		}
	}
}

// FuzzParseConfig: service configs come from name resolvers, which may
// hand out anything. Parsing never panics, and what it accepts is valid.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"interval":"1s"}`, `{"latencyEjection":{"ratio":2}}`, `{"childPolicy":[{"round_robin":{}}]}`, `[`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		c, err := ParseConfig([]byte(js))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "failsoft: outlier: ") {
				t.Fatalf("error %q lacks the prefix", err)
			}
			return
		}
		if c.Interval <= 0 || c.BaseEjectionTime <= 0 || c.MaxEjectionTime <= 0 ||
			c.MaxEjectionPercent < 0 || c.MaxEjectionPercent > 100 || c.ConsecutiveFailures < 0 ||
			c.FailureMinimumCalls < 1 || c.LatencyMinimumCalls < 1 || c.LatencyMinimumCalls > latencySamples ||
			(c.LatencyRatio != 0 && c.LatencyRatio <= 1) {
			t.Fatalf("accepted an invalid config %+v from %q", c, js)
		}
	})
}
