// Command report measures failsoft's client chain and its peers' in one
// run (interceptor cost, a loopback call, failure scenarios and overload)
// and prints one markdown table.
//
//	go run ./cmd/report                 # the published run, a few minutes on 2 cores
//	go run ./cmd/report -scale 3        # three times the calls and durations
//	go run ./cmd/report -micro=false    # scenarios only
//
// With valgrind installed, it also counts the instructions per call of the
// Go benchmarks, running itself under callgrind with -calls.
package main
