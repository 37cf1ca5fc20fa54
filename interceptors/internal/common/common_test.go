package common_test

import (
	"context"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
)

type config struct {
	common.Config
}

func TestOptions(t *testing.T) {
	var c config
	clk := clock.NewFake(time.Unix(0, 0))
	obs := observe.Func(func(context.Context, observe.Event) {})
	for _, o := range []func(*config) error{
		common.Resolver[config]("pkg", policy.Default()),
		common.Observer[config](obs),
		common.Clock[config]("pkg", clk),
	} {
		if err := o(&c); err != nil {
			t.Fatal(err)
		}
	}
	if c.Resolver != policy.Default() || c.Observer == nil || c.Clock != clk {
		t.Fatalf("config %+v", c)
	}
	if err := common.Observer[config](nil)(&c); err != nil || c.Observer != nil {
		t.Fatalf("a nil observer: %v, %v; want it accepted", err, c.Observer)
	}
	if err := common.Resolver[config]("pkg", nil)(&c); err == nil || err.Error() != "pkg.WithResolver: nil resolver" {
		t.Errorf("nil resolver: %v", err)
	}
	if err := common.Clock[config]("pkg", nil)(&c); err == nil || err.Error() != "pkg.WithClock: nil clock" {
		t.Errorf("nil clock: %v", err)
	}
	if c.Resolver == nil || c.Clock != clk {
		t.Errorf("a refused value was stored: %+v", c)
	}
}
