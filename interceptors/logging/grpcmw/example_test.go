package grpcmw_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"

	mwlogging "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"

	"github.com/failsoft/failsoft/interceptors/logging/grpcmw"
	"github.com/failsoft/failsoft/interceptors/observe"
)

func ExampleNew() {
	// The Logger a service already gives go-grpc-middleware's logging
	// interceptors (usually one of its providers, for zap, zerolog ...).
	logger := mwlogging.LoggerFunc(func(_ context.Context, level mwlogging.Level, msg string, fields ...any) {
		fmt.Println(slog.Level(level), msg, strings.Trim(fmt.Sprint(fields), "[]"))
	})
	obs, err := grpcmw.New(logger, nil)
	if err != nil {
		log.Fatal(err)
	}
	// Pass obs to failsoft.DialOptions with failsoft.WithObserver(obs).
	obs.Observe(context.Background(), observe.Event{
		Kind: observe.RetryStopped, Method: "/payments.v1.PaymentService/GetPayment", Target: "dns:///payments",
		Attempt: 3, Reason: "attempts",
	})
	// Output:
	// WARN failsoft: retries exhausted failsoft.event retry_stopped grpc.method /payments.v1.PaymentService/GetPayment grpc.target dns:///payments failsoft.attempt 3 failsoft.reason attempts
}

func ExampleNewHandler() {
	logger := mwlogging.LoggerFunc(func(_ context.Context, level mwlogging.Level, msg string, fields ...any) {
		fmt.Println(slog.Level(level), msg, fields)
	})
	// Any slog user can write through it; groups become dotted keys.
	l := slog.New(grpcmw.NewHandler(logger, slog.LevelDebug))
	l.WithGroup("payment").Debug("charged", "id", "pay_1")
	// Output:
	// DEBUG charged [payment.id pay_1]
}
