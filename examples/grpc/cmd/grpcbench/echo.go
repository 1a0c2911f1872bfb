package main

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The bench's Echo service is the example's (../../echo.go) on the wire:
// the same service name and the Hello and Count methods, with
// google.protobuf.StringValue messages. It is repeated here because the
// example is a package main of its own, which nothing can import; only
// what the bench calls is implemented.
const echoService = "tinylb.example.Echo"

const (
	helloMethod = "/" + echoService + "/Hello"
	countMethod = "/" + echoService + "/Count"
)

// maxCount bounds what Count sends.
const maxCount = 1000

// benchEcho is the Echo service of one bench backend.
type benchEcho struct{ name string }

// echoServer is what the ServiceDesc's HandlerType names, so that
// RegisterService checks the implementation.
type echoServer interface {
	Hello(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	Count(in *wrapperspb.StringValue, stream grpc.ServerStream) error
}

var countDesc = grpc.StreamDesc{
	StreamName:    "Count",
	ServerStreams: true,
	Handler: func(srv any, stream grpc.ServerStream) error {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); err != nil {
			return err
		}
		return srv.(echoServer).Count(in, stream)
	},
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Hello",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, req any) (any, error) {
				return srv.(echoServer).Hello(ctx, req.(*wrapperspb.StringValue))
			}
			if interceptor == nil {
				return call(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: helloMethod}, call)
		},
	}},
	Streams: []grpc.StreamDesc{countDesc},
}

// Hello answers "hello <in> from <backend>", with the backend's name in a
// header (x-backend) and a trailer (x-served-by), as the example does: a
// call carries a header block, a message and a trailer block each way.
func (e *benchEcho) Hello(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if err := grpc.SetHeader(ctx, metadata.Pairs("x-backend", e.name)); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-served-by", e.name)); err != nil {
		return nil, err
	}
	return wrapperspb.String("hello " + in.GetValue() + " from " + e.name), nil
}

// Count streams n messages ("<backend> 1" ... "<backend> n"), n being its
// request.
func (e *benchEcho) Count(in *wrapperspb.StringValue, stream grpc.ServerStream) error {
	n, err := strconv.Atoi(in.GetValue())
	if err != nil || n < 0 || n > maxCount {
		return status.Errorf(codes.InvalidArgument, "count %q is not a number from 0 to %d", in.GetValue(), maxCount)
	}
	for i := 1; i <= n; i++ {
		if err := stream.SendMsg(wrapperspb.String(e.name + " " + strconv.Itoa(i))); err != nil {
			return err
		}
	}
	return nil
}
