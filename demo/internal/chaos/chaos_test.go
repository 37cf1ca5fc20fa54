package chaos

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; empty for valid
	}{
		{"zero", Config{}, ""},
		{"full", Config{ErrorRate: 0.5, ErrorCodes: []codes.Code{codes.Internal}, Latency: time.Millisecond, SlowLatency: time.Second,
			SlowFraction: 0.1, OutageEvery: time.Minute, OutageFor: time.Second, LostRate: 1, PushbackRate: 0.5, Pushback: time.Second}, ""},
		{"rate above 1", Config{ErrorRate: 1.5}, "error-rate 1.5 is outside [0, 1]"},
		{"negative rate", Config{LostRate: -0.1}, "lost-rate -0.1 is outside [0, 1]"},
		{"slow fraction", Config{SlowFraction: 2}, "slow-fraction 2 is outside"},
		{"sum above 1", Config{ErrorRate: 0.6, PushbackRate: 0.6}, "exceeds 1"},
		{"negative latency", Config{Latency: -time.Second}, "latency -1s is negative"},
		{"negative pushback", Config{Pushback: -time.Millisecond}, "pushback -1ms is negative"},
		{"outage without period", Config{OutageFor: time.Second}, "needs a positive outage-every"},
		{"outage longer than period", Config{OutageFor: 2 * time.Second, OutageEvery: time.Second}, "longer than outage-every"},
		{"OK as error code", Config{ErrorCodes: []codes.Code{codes.OK}}, "not an error code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			if _, err := New(tc.cfg, 1, nil); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestParseCodes(t *testing.T) {
	cs, err := ParseCodes("UNAVAILABLE, internal,RESOURCE_EXHAUSTED")
	if err != nil || len(cs) != 3 || cs[1] != codes.Internal {
		t.Fatalf("ParseCodes = %v, %v", cs, err)
	}
	for _, bad := range []string{"OK", "NOPE"} {
		if _, err := ParseCodes(bad); err == nil {
			t.Errorf("ParseCodes(%q) succeeded", bad)
		}
	}
}

func TestHandlerRefusesBadSettings(t *testing.T) {
	ch, err := New(Config{ErrorRate: 0.1}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ch.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		body, want string
		code       int
	}{
		{`{"error_rate": 1.5}`, "error-rate 1.5 is outside [0, 1]", 400},
		{`{"latency": "-2s"}`, "latency -2s is negative", 400},
		{`{"latency": "soon"}`, "latency", 400},
		{`{"error_codes": ["NOPE"]}`, "unknown status code", 400},
		{`{"eror_rate": 0.1}`, "unknown field", 400},
		{`{"latency": "20ms", "lost_rate": 0.5}`, `"lost_rate": 0.5`, 200},
	} {
		resp, err := http.Post(srv.URL+"/chaos", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("POST %s = %d %q, want %d containing %q", tc.body, resp.StatusCode, b, tc.code, tc.want)
		}
	}
	got := ch.Config()
	if got.ErrorRate != 0.1 || got.Latency != 20*time.Millisecond || got.LostRate != 0.5 {
		t.Errorf("config after updates = %+v; bad updates must change nothing, good ones only their fields", got)
	}
	srv.CloseClientConnections()
}

func call(ch *Chaos, sideEffects bool) error {
	u, _ := ch.Interceptors(func(string) bool { return true }, func(string) bool { return sideEffects })
	_, err := u(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/p.S/M"}, func(context.Context, any) (any, error) { return "ok", nil })
	return err
}

func TestOutageWindows(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	ch, err := New(Config{OutageEvery: 10 * time.Second, OutageFor: 2 * time.Second}, 1, clk)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		at   time.Duration
		down bool
	}{{0, true}, {time.Second, true}, {2 * time.Second, false}, {9 * time.Second, false}, {10 * time.Second, true}, {12 * time.Second, false}} {
		clk.Advance(step.at - clk.Now().Sub(time.Unix(0, 0)))
		err := call(ch, false)
		if got := status.Code(err) == codes.Unavailable; got != step.down {
			t.Errorf("at %v: err = %v, want down=%v", step.at, err, step.down)
		}
	}
	if n := ch.Counters().Outage; n != 3 {
		t.Errorf("outage counter = %d, want 3", n)
	}
}

func TestFaultsAreCountedAndSeeded(t *testing.T) {
	run := func() (Counters, []codes.Code) {
		ch, err := New(Config{ErrorRate: 0.2, ErrorCodes: []codes.Code{codes.Unavailable, codes.Internal}, LostRate: 0.3, PushbackRate: 0.1, Pushback: 50 * time.Millisecond}, 7, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []codes.Code
		for range 500 {
			got = append(got, status.Code(call(ch, true)))
		}
		return ch.Counters(), got
	}
	c1, seq1 := run()
	c2, seq2 := run()
	for i := range seq1 {
		if seq1[i] != seq2[i] {
			t.Fatalf("same seed, different decision at call %d: %v vs %v", i, seq1[i], seq2[i])
		}
	}
	var unavailable, internal, exhausted int
	for _, c := range seq1 {
		switch c {
		case codes.Unavailable:
			unavailable++
		case codes.Internal:
			internal++
		case codes.ResourceExhausted:
			exhausted++
		}
	}
	if uint64(unavailable) != c1.Errors["UNAVAILABLE"]+c1.Lost || uint64(internal) != c1.Errors["INTERNAL"] || uint64(exhausted) != c1.Pushback {
		t.Errorf("counters %+v do not match what callers saw: %d UNAVAILABLE, %d INTERNAL, %d RESOURCE_EXHAUSTED", c1, unavailable, internal, exhausted)
	}
	if c1.Calls != 500 || c1.Total() == 0 || c1.Total() != c2.Total() {
		t.Errorf("counters %+v / %+v", c1, c2)
	}
}

// Settings posted to the admin endpoint are untrusted: whatever the body,
// parsing and applying it either fails or yields valid settings.
func FuzzParseUpdate(f *testing.F) {
	for _, s := range []string{
		`{"error_rate":0.1,"error_codes":["UNAVAILABLE","INTERNAL"]}`,
		`{"latency":"20ms","slow_latency":"1s","slow_fraction":0.05}`,
		`{"outage_every":"30s","outage_for":"5s"}`,
		`{"reset":true,"down":true}`,
		`{"error_rate":1.5}`, `{"latency":"-1s"}`, `{`, `[]`, `{"pushback":"1h","pushback_rate":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := ParseUpdate(body)
		if err != nil {
			return
		}
		c, err := u.apply(Config{})
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("applied settings are invalid: %v", err)
		}
	})
}
