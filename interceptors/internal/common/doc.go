// Package common holds the options that several interceptor packages share
// (WithResolver, WithObserver, WithClock): one place for their fields,
// defaults and checks, so that each package's exported option is one line
// and every package rejects a bad value with the same message.
package common
