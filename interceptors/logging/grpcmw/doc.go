// Package grpcmw writes failsoft's decisions to a go-grpc-middleware
// logging.Logger, for services that already log through one (its
// providers adapt zap, zerolog, logrus, go-kit and others to it).
//
// NewHandler turns such a Logger into a log/slog Handler, and New builds
// failsoft's logging.Observer on it: records keep the levels, attributes
// and rate limits the logging package documents, become the Logger's
// message and key-value fields (groups flattened as "group.key"), and
// carry the fields go-grpc-middleware's interceptors put on the call's
// context (logging.InjectFields), so that failsoft's records share the
// request's fields with the middleware's own.
package grpcmw
