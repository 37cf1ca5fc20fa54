package option_test

import (
	"errors"
	"testing"

	"github.com/failsoft/failsoft/interceptors/internal/option"
)

type config struct{ n int }

type Option func(*config) error

func add(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return errors.New("negative")
		}
		c.n += n
		return nil
	}
}

func TestApply(t *testing.T) {
	var c config
	if err := option.Apply(&c, add(1), nil, add(2)); err != nil || c.n != 3 {
		t.Fatalf("Apply = %v, n = %d; want nil, 3", err, c.n)
	}
	err := option.Apply(&c, add(-1), add(4), add(-2))
	if err == nil || err.Error() != "negative\nnegative" || c.n != 7 {
		t.Fatalf("Apply = %q, n = %d; want both errors and the valid option applied", err, c.n)
	}
	if err := option.Apply[config, Option](&c); err != nil {
		t.Fatalf("Apply() = %v", err)
	}
}

type iface interface{ apply(*config) error }

type fn func(*config) error

func (f fn) apply(c *config) error { return f(c) }

func TestEach(t *testing.T) {
	var c config
	opts := []iface{fn(add(1)), nil, fn(add(-1)), fn(add(2))}
	err := option.Each(opts, func(o iface) error { return o.apply(&c) })
	if err == nil || err.Error() != "negative" || c.n != 3 {
		t.Fatalf("Each = %v, n = %d; want one error, n = 3", err, c.n)
	}
}
