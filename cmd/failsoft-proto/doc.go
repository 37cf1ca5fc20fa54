// Command failsoft-proto writes failsoft's options file,
// failsoft/v1/options.proto, into a directory of a user's repository, so
// that protos which import it compile with buf or protoc. The file comes
// from the failsoft module the command is built from, so it always matches
// the Go code the user links.
//
// Usage:
//
//	go run github.com/failsoft/failsoft/cmd/failsoft-proto [-check] DIR
//
// It writes DIR/failsoft/v1/options.proto. With -check it writes nothing
// and fails when that file is missing or differs, for a CI step that keeps
// the copy current. List DIR as a second module of the user's buf.yaml and
// generate only the user's own module (see examples/quickstart): the Go
// code for failsoft's options is this module's package
// github.com/failsoft/failsoft/proto/failsoft/v1, never generated again.
package main
