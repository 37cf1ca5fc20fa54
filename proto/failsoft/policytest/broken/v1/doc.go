// Package brokenv1 holds the Go code generated from broken.proto: a test
// service whose every method carries an invalid failsoft policy. Linking
// it registers those policies, so failsoft.DialOptions and ServerOptions
// refuse a binary that imports it unless told to defer the check; import
// it only in tests that want broken policies.
//
// Everything else in this directory is generated: edit broken.proto and
// run `make generate`.
package brokenv1
