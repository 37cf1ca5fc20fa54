// Package redistest runs a throwaway redis-server for tests.
package redistest
