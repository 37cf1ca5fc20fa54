package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/policy"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// Config is the faults of one phase of the demo, on the payment service.
type Config = chaos.Faults

// Status is what the server's control endpoint shows.
type Status = chaos.Status

// Update is a whole config for the server's control endpoint.
type Update = chaos.Config

// PushbackTrailer is the trailer that carries a server's retry delay.
const PushbackTrailer = chaos.PushbackTrailer

// service is the payment service's name in rules.
var service = paymentsv1.PaymentService_ServiceDesc.ServiceName

// reads are the payment service's methods without side effects, whose
// responses are never lost.
var reads = func() []string {
	var out []string
	resolver := policy.Default()
	add := func(name string) {
		m := "/" + service + "/" + name
		if p, err := resolver.Resolve(m); err == nil && p.Idempotency == policy.NoSideEffects {
			out = append(out, m)
		}
	}
	for _, m := range paymentsv1.PaymentService_ServiceDesc.Methods {
		add(m.MethodName)
	}
	for _, s := range paymentsv1.PaymentService_ServiceDesc.Streams {
		add(s.StreamName)
	}
	return out
}()

// Rules turns a phase's faults into the injector's config: the payment
// service gets them (never the health service), and its reads lose no
// responses. A healthy phase switches injection off.
func Rules(c Config) chaos.Config {
	if reflect.ValueOf(c).IsZero() {
		return chaos.Config{}
	}
	var rules []chaos.Rule
	if c.LostRate > 0 {
		read := c
		read.LostRate = 0
		for _, m := range reads {
			rules = append(rules, chaos.Rule{Match: m, Faults: read})
		}
	}
	rules = append(rules, chaos.Rule{Match: "/" + service + "/*", Faults: c})
	return chaos.Config{Enabled: true, Rules: rules}
}

// UpdateFrom returns the control request that switches the server to c.
func UpdateFrom(c Config) *Update {
	u := Rules(c)
	return &u
}

// RegisterFlags registers c's fields as flags on fs. Check the result with
// Validate after parsing.
func RegisterFlags(fs *flag.FlagSet, c *Config) {
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

// ParseCodes parses a comma-separated list of canonical code names.
func ParseCodes(s string) ([]codes.Code, error) {
	var out []codes.Code
	for _, name := range strings.Split(s, ",") {
		if strings.TrimSpace(name) == "" {
			continue
		}
		c, err := policy.ParseCode(name)
		if err != nil {
			return nil, fmt.Errorf("error-codes: %w", err)
		}
		if c == codes.OK {
			return nil, fmt.Errorf("error-codes: OK is not an error code")
		}
		out = append(out, c)
	}
	return out, nil
}

// Post sends u to the control endpoint of the server whose admin address
// is addr ("127.0.0.1:PORT").
func Post(ctx context.Context, addr string, u *Update) error {
	return PostTo(ctx, "http://"+addr+"/chaos", "", u)
}

// PostTo sends u to the control endpoint at url, with the shared secret as
// a bearer token when it is not empty.
func PostTo(ctx context.Context, url, secret string, u *Update) error {
	body, err := json.Marshal(u)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("chaos: set %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chaos: set %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Get reads JSON from path on the admin endpoint at addr into v.
func Get(ctx context.Context, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
