package option

import "errors"

// Apply calls each option on cfg in order, skipping nil ones, and returns
// the errors of all options that failed, joined, or nil if none did. O is
// the package's Option type, such as `type Option func(*config) error`.
func Apply[C any, O ~func(*C) error](cfg *C, opts ...O) error {
	var errs []error
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Each is Apply for options that are interface values: it calls apply with
// each non-nil option in order and returns all errors, joined.
func Each[O any](opts []O, apply func(O) error) error {
	var errs []error
	for _, o := range opts {
		if any(o) == nil {
			continue
		}
		if err := apply(o); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
