package pushback_test

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/internal/pushback"
)

func ExampleRead() {
	st, _ := status.New(codes.Unavailable, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)})
	fmt.Printf("%+v\n", pushback.Read(nil, st.Err()))
	fmt.Printf("%+v\n", pushback.Read(metadata.Pairs(pushback.Metadata, "250"), st.Err()))
	fmt.Printf("%+v\n", pushback.Read(metadata.Pairs(pushback.Metadata, "-1"), nil))
	// Output:
	// {Present:true Allow:true Delay:2s}
	// {Present:true Allow:true Delay:250ms}
	// {Present:true Allow:false Delay:0s}
}
