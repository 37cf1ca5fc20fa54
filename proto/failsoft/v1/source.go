package failsoftv1

import "embed"

// Source holds options.proto, the file this package is generated from,
// under the path a .proto file imports it by ("failsoft/v1/options.proto").
// A user's build writes it out with the failsoft-proto command so that
// protoc or buf can compile protos that import failsoft's options without
// copying the file by hand.
//
//go:embed options.proto
var source embed.FS

// OptionsProtoPath is the import path of failsoft's options file.
const OptionsProtoPath = "failsoft/v1/options.proto"

// OptionsProto returns the contents of failsoft/v1/options.proto.
func OptionsProto() []byte {
	b, err := source.ReadFile("options.proto")
	if err != nil {
		panic("failsoftv1: options.proto is not embedded: " + err.Error()) // a build error, not a run-time one
	}
	return b
}
