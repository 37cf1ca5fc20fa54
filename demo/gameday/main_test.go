package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	demochaos "github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/interceptors/chaos"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "game-day-secret-0123456789"

// endpoint is a service's control endpoint that requires the secret.
func endpoint(t *testing.T) (*chaos.Injector, string, poster) {
	t.Helper()
	inj, err := chaos.New(chaos.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	h, err := inj.Handler(chaos.WithSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	post := func(ctx context.Context, url string, cfg chaos.Config) error {
		return demochaos.PostTo(ctx, url, secret, &cfg)
	}
	return inj, srv.URL + "/chaos", post
}

// The four phases reach the endpoint in order, each for its share of the
// day, and the day ends with injection off.
func TestPlaysThePhases(t *testing.T) {
	inj, url, post := endpoint(t)
	var seen []string
	var waited time.Duration
	wait := func(_ context.Context, d time.Duration) error {
		seen = append(seen, inj.Config().String())
		waited += d
		return nil
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-control", url, "-match", "/orders.v1.Orders/*", "-duration", "10m"}, &out, post, wait); err != nil {
		t.Fatal(err)
	}
	want := []string{"latency 5ms, 8% slowed by 300ms", "errors 3% UNAVAILABLE", "DOWN", "latency 5ms"}
	if len(seen) != len(want) || waited != 10*time.Minute {
		t.Fatalf("phases seen %q over %v", seen, waited)
	}
	for i, w := range want {
		if !strings.HasPrefix(seen[i], "/orders.v1.Orders/*: ") || !strings.Contains(seen[i], w) {
			t.Errorf("phase %d: endpoint had %q, want %q", i, seen[i], w)
		}
	}
	if inj.Config().Enabled || !strings.Contains(out.String(), "--- injection off") {
		t.Errorf("after the day: %v\n%s", inj.Config(), out.String())
	}
}

// An interrupted day, or one whose endpoint refuses a phase, still ends
// with injection off.
func TestAlwaysEndsOff(t *testing.T) {
	inj, url, post := endpoint(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phase := 0
	wait := func(ctx context.Context, _ time.Duration) error {
		if phase++; phase == 3 {
			cancel() // interrupted during the outage
			return ctx.Err()
		}
		return nil
	}
	err := run(ctx, []string{"-control", url}, &bytes.Buffer{}, post, wait)
	if err == nil || inj.Config().Enabled {
		t.Fatalf("interrupted: %v, config %v", err, inj.Config())
	}

	refused := func(ctx context.Context, url string, cfg chaos.Config) error {
		return demochaos.PostTo(ctx, url, "wrong-secret-0123456789", &cfg)
	}
	if err := run(context.Background(), []string{"-control", url}, &bytes.Buffer{}, refused, sleep); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("without the secret: %v", err)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-control is required"},
		{[]string{"-control", "http://x", "-duration", "0s"}, "-duration 0s is not positive"},
		{[]string{"-dry-run", "-match", "orders"}, `match "orders" is not`},
	} {
		err := run(context.Background(), tc.args, &bytes.Buffer{}, nil, sleep)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-dry-run", "-match", "/orders.v1.Orders/Create"}, &out, nil, sleep); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := chaos.ParseConfig([]byte(line)); err != nil {
			t.Errorf("dry run printed %q, which the endpoint would refuse: %v", line, err)
		}
	}
}
