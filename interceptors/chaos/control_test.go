package chaos_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/chaos"
)

func TestControlAccess(t *testing.T) {
	const secret = "0123456789abcdef-game-day"
	body := `{"enabled": true, "rules": [{"match": "*", "down": true}]}`
	for _, tc := range []struct {
		name   string
		opts   []chaos.ControlOption
		remote string
		auth   string
		want   int
	}{
		{"loopback v4, no secret set", nil, "127.0.0.1:5000", "", 200},
		{"loopback v6, no secret set", nil, "[::1]:5000", "", 200},
		{"remote, no secret set", nil, "203.0.113.7:5000", "", 403},
		{"remote, no secret set, token sent anyway", nil, "203.0.113.7:5000", "Bearer " + secret, 403},
		{"garbled peer", nil, "localhost", "", 403},
		{"remote with the secret", []chaos.ControlOption{chaos.WithSecret(secret)}, "203.0.113.7:5000", "Bearer " + secret, 200},
		{"remote with a wrong secret", []chaos.ControlOption{chaos.WithSecret(secret)}, "203.0.113.7:5000", "Bearer " + secret + "x", 403},
		{"loopback without the secret it requires", []chaos.ControlOption{chaos.WithSecret(secret)}, "127.0.0.1:5000", "", 403},
		{"secret not as bearer", []chaos.ControlOption{chaos.WithSecret(secret)}, "203.0.113.7:5000", secret, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := mustNew(t, chaos.Config{})
			h, err := inj.Handler(tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, "/chaos", strings.NewReader(body))
			req.RemoteAddr = tc.remote
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d %q, want %d", rec.Code, rec.Body, tc.want)
			}
			if applied := inj.Config().Enabled; applied != (tc.want == 200) {
				t.Errorf("config applied = %v with status %d", applied, rec.Code)
			}
		})
	}
	inj := mustNew(t, chaos.Config{})
	if _, err := inj.Handler(chaos.WithSecret("short")); err == nil || !strings.Contains(err.Error(), "WithSecret") {
		t.Errorf("a short secret: %v", err)
	}
}

// Over a real loopback connection: GET shows the status, a bad config is
// refused with the reason and changes nothing, a good one replaces it.
func TestControlOverHTTP(t *testing.T) {
	inj := mustNew(t, on(chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorRate: 0.1}}))
	h, err := inj.Handler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	before := inj.Config()
	for _, tc := range []struct {
		method, body, want string
		code               int
	}{
		{http.MethodGet, "", `"summary": "*: errors 10% UNAVAILABLE"`, 200},
		{http.MethodPost, `{"enabled": true, "rules": [{"match": "*", "error_rate": 1.5}]}`, "error_rate 1.5 is outside [0, 1]", 400},
		{http.MethodPost, `{"enabled": true, "rules": [{"match": "*", "latency": "soon"}]}`, "latency", 400},
		{http.MethodPost, `{"enabled": true, "rules": [{"match": "*", "error_codes": ["NOPE"]}]}`, "unknown status code", 400},
		{http.MethodPost, `{"enabled": true, "rules": [{"match": "*", "eror_rate": 0.1}]}`, "unknown field", 400},
		{http.MethodPost, `{"enabled": true, "rules": [{"match": "nope"}]}`, `match "nope" is not`, 400},
		{http.MethodPost, `{"enabled": true}{}`, "data after the object", 400},
		{http.MethodPost, `{"enabled": true, "rules": [{"match": "x", "pushback": "1h", "slow_fraction": 9}]}`, "slow_fraction 9 is outside", 400},
		{http.MethodDelete, "", "use GET to read", 405},
		{http.MethodPost, strings.Repeat(" ", 70<<10) + "{}", "too large", 400},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+"/chaos", strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %.60s = %d %q, want %d containing %q", tc.method, tc.body, resp.StatusCode, b, tc.code, tc.want)
		}
	}
	if got := inj.Config(); !reflect.DeepEqual(got, before) {
		t.Fatalf("bad requests changed the config to %v", got)
	}
	resp, err := http.Post(srv.URL+"/chaos", "application/json", strings.NewReader(`{"enabled": true, "rules": [{"match": "/p.Svc/*", "latency": "20ms", "lost_rate": 0.5, "error_codes": ["internal"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var st chaos.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	want := on(chaos.Rule{Match: "/p.Svc/*", Faults: chaos.Faults{Latency: 20 * time.Millisecond, LostRate: 0.5, ErrorCodes: []codes.Code{codes.Internal}}})
	if err != nil || !reflect.DeepEqual(st.Config, want) || !reflect.DeepEqual(inj.Config(), want) || st.Seed != 7 {
		t.Fatalf("after a good POST: %+v, %v; injector has %v", st, err, inj.Config())
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	cfg := on(
		chaos.Rule{Match: "/p.Svc/Write", Faults: chaos.Faults{LostRate: 0.2, Latency: time.Millisecond}},
		chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorRate: 0.1, ErrorCodes: []codes.Code{codes.Canceled, codes.Unavailable}, SlowLatency: time.Second, SlowFraction: 0.05,
			OutageEvery: time.Minute, OutageFor: 5 * time.Second, PushbackRate: 0.1, Pushback: 100 * time.Millisecond}},
	)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := chaos.ParseConfig(b)
	if err != nil || !reflect.DeepEqual(got, cfg) {
		t.Fatalf("round trip of %s: %v, %v", b, got, err)
	}
	if !strings.Contains(string(b), `"error_codes":["CANCELLED","UNAVAILABLE"]`) {
		t.Errorf("codes are not written by name: %s", b)
	}
}

// Control requests are untrusted: whatever the body, parsing either fails
// or yields a config that validates and survives a round trip.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"enabled":true,"rules":[{"match":"*","error_rate":0.1,"error_codes":["UNAVAILABLE","INTERNAL"]}]}`,
		`{"enabled":true,"rules":[{"match":"/p.S/*","latency":"20ms","slow_latency":"1s","slow_fraction":0.05}]}`,
		`{"enabled":true,"rules":[{"match":"/p.S/M","outage_every":"30s","outage_for":"5s","down":true}]}`,
		`{"enabled":false}`, `{"rules":[{"match":"*","error_rate":1.5}]}`, `{"rules":[{"latency":"-1s"}]}`, `{`, `[]`, `null`,
		`{"rules":[{"match":"*","pushback":"1h","pushback_rate":1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := chaos.ParseConfig(body)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config is invalid: %v", err)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := chaos.ParseConfig(b)
		if err != nil || !reflect.DeepEqual(again.String(), c.String()) {
			t.Fatalf("round trip of %s: %v, %v", b, again, err)
		}
	})
}
