// Package option applies the functional options of the interceptor
// packages, so that each New reports bad options alike: every one of them,
// each naming itself.
package option
