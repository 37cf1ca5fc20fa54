package common

import (
	"errors"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Config is embedded in a package's config. A package fills in its own
// defaults; fields it has no option for stay zero.
type Config struct {
	// Resolver says which policy a method has.
	Resolver *policy.Resolver
	// Observer hears the package's events; nil reports nothing.
	Observer observe.Observer
	// Clock is what the package reads the time from.
	Clock clock.Clock
}

func (c *Config) common() *Config { return c }

// Embedder is a pointer to a package's config that embeds Config.
type Embedder[C any] interface {
	*C
	common() *Config
}

// Resolver returns the option that sets the resolver to r. A nil r fails
// with "<pkg>.WithResolver: nil resolver".
func Resolver[C any, P Embedder[C]](pkg string, r *policy.Resolver) func(*C) error {
	return func(c *C) error {
		if r == nil {
			return errors.New(pkg + ".WithResolver: nil resolver")
		}
		P(c).common().Resolver = r
		return nil
	}
}

// Observer returns the option that sets the observer to o. A nil o is
// allowed and means no reporting.
func Observer[C any, P Embedder[C]](o observe.Observer) func(*C) error {
	return func(c *C) error {
		P(c).common().Observer = o
		return nil
	}
}

// Clock returns the option that sets the clock to clk. A nil clk fails
// with "<pkg>.WithClock: nil clock".
func Clock[C any, P Embedder[C]](pkg string, clk clock.Clock) func(*C) error {
	return func(c *C) error {
		if clk == nil {
			return errors.New(pkg + ".WithClock: nil clock")
		}
		P(c).common().Clock = clk
		return nil
	}
}
