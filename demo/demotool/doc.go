// Command demotool helps demo/run.sh without assuming tools beyond Go and
// bash on the machine:
//
//	demotool ports N     print N distinct free TCP ports of 127.0.0.1
//	demotool ok URL      exit 0 when GET URL answers 200 within 2 s
//
// A port printed free may be taken by another process before it is used;
// the caller must cope with a failed start.
package main
