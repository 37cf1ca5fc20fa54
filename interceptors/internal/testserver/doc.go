// Package testserver starts loopback gRPC servers and clients for the
// interceptor packages' tests: real servers on 127.0.0.1, stopped when the
// test ends.
package testserver
