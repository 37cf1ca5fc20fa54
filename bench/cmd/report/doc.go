// Command report measures failsoft's client chain and its peers' in one
// run and prints three markdown tables: the cost of a call (interceptor
// cost, a loopback call) with the slow tail, the failure modes of issue
// #18 with failsoft's goals and whether the run met them, and the
// throughput of the pending stores against raw bbolt and Redis.
//
//	go run ./cmd/report                 # the published run, a few minutes on 2 cores
//	go run ./cmd/report -scale 3        # three times the calls and durations
//	go run ./cmd/report -micro=false    # scenarios only
//	go run ./cmd/report -micro=false -instructions=false -interleaved 0 -tail=false -mode overload
//	                                    # one failure mode (here the three overload ones)
//	go run ./cmd/report -micro=false -instructions=false -interleaved 0 -tail=false -mode none
//	                                    # the pending stores alone (-pending=false leaves them out)
//
// With valgrind installed, it also counts the instructions per call of the
// Go benchmarks, running itself under callgrind with -calls.
package main
