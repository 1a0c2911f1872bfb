package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The Echo service is the example's own gRPC service, defined without
// protoc: its ServiceDesc is written by hand (the shape protoc-gen-go-grpc
// generates, see grpc-go's examples/helloworld/helloworld_grpc.pb.go), and
// its messages are protobuf's well-known google.protobuf.StringValue, so
// that grpc-go's default proto codec carries them and nothing needs
// registering. In proto terms:
//
//	service Echo {
//	  rpc Hello(StringValue) returns (StringValue);         // "hello <in> from <backend>"
//	  rpc Find(StringValue) returns (StringValue);          // key "name": the backend's name; else NOT_FOUND
//	  rpc Wait(StringValue) returns (StringValue);          // until the call's deadline or cancellation
//	  rpc Count(StringValue) returns (stream StringValue);  // "<backend> 1" ... "<backend> n"; "n+": then holds on
//	  rpc Chat(stream StringValue) returns (stream StringValue); // "<backend>: <in>" each; "!CODE" ends it
//	}
const echoService = "tinylb.example.Echo"

// echoHandler is the Echo service as a server implements it; the
// ServiceDesc names it so that RegisterService checks the implementation.
type echoHandler interface {
	Hello(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	Find(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	Wait(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	Count(in *wrapperspb.StringValue, stream grpc.ServerStream) error
	Chat(stream grpc.ServerStream) error
}

// countDesc describes Count, on the server and in the client's NewStream.
var countDesc = grpc.StreamDesc{StreamName: "Count", Handler: countHandler, ServerStreams: true}

// chatDesc describes Chat, a bidi stream.
var chatDesc = grpc.StreamDesc{StreamName: "Chat", Handler: chatHandler, ServerStreams: true, ClientStreams: true}

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*echoHandler)(nil),
	Methods: []grpc.MethodDesc{
		unary("Hello", echoHandler.Hello),
		unary("Find", echoHandler.Find),
		unary("Wait", echoHandler.Wait),
	},
	Streams: []grpc.StreamDesc{countDesc, chatDesc},
}

// unary makes the MethodDesc of a unary method, as generated code does:
// decode the request, then call the method directly or through the
// server's interceptor.
func unary(name string, method func(echoHandler, context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, req any) (any, error) {
				return method(srv.(echoHandler), ctx, req.(*wrapperspb.StringValue))
			}
			if interceptor == nil {
				return call(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + echoService + "/" + name}, call)
		},
	}
}

func countHandler(srv any, stream grpc.ServerStream) error {
	in := new(wrapperspb.StringValue)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	return srv.(echoHandler).Count(in, stream)
}

func chatHandler(srv any, stream grpc.ServerStream) error {
	return srv.(echoHandler).Chat(stream)
}

// echo implements the Echo service for one backend.
type echo struct {
	name string
	// deadlines, if not nil, receives from every Wait whether its call
	// carried a deadline (a grpc-timeout that made it through the
	// balancer); Wait does not block on it.
	deadlines chan bool
}

var _ echoHandler = (*echo)(nil)

// Hello greets, and shows metadata both ways: it sends the backend's name
// in the header (x-backend) and the trailer (x-served-by), and echoes the
// caller's x-request-id in the header.
func (e *echo) Hello(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	header := metadata.Pairs("x-backend", e.name)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if id := md.Get("x-request-id"); len(id) > 0 {
			header.Set("x-request-id", id...)
		}
	}
	if err := grpc.SetHeader(ctx, header); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-served-by", e.name)); err != nil {
		return nil, err
	}
	return wrapperspb.String("hello " + in.GetValue() + " from " + e.name), nil
}

// Find answers the key "name" with the backend's name and every other
// key with NOT_FOUND, to show that status codes pass through.
func (e *echo) Find(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if in.GetValue() != "name" {
		return nil, status.Errorf(codes.NotFound, "no key %q on %s", in.GetValue(), e.name)
	}
	return wrapperspb.String(e.name), nil
}

// Wait answers nothing until the call ends, to show deadlines: the
// caller gets DEADLINE_EXCEEDED, and the backend saw the deadline too.
func (e *echo) Wait(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	_, hasDeadline := ctx.Deadline()
	if e.deadlines != nil {
		select {
		case e.deadlines <- hasDeadline:
		default:
		}
	}
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

// maxCount bounds what Count sends.
const maxCount = 1000

// Count streams n messages, n being its request. A request "n+" streams n
// and then holds the stream open, sending nothing more, until the call
// ends (a watch that has sent what it had).
func (e *echo) Count(in *wrapperspb.StringValue, stream grpc.ServerStream) error {
	arg, hold := strings.CutSuffix(in.GetValue(), "+")
	n, err := strconv.Atoi(arg)
	if err != nil || n < 0 || n > maxCount {
		return status.Errorf(codes.InvalidArgument, "count %q is not a number from 0 to %d", in.GetValue(), maxCount)
	}
	for i := 1; i <= n; i++ {
		if err := stream.SendMsg(wrapperspb.String(e.name + " " + strconv.Itoa(i))); err != nil {
			return err
		}
	}
	if hold {
		<-stream.Context().Done()
		return status.FromContextError(stream.Context().Err()).Err()
	}
	return nil
}

// Chat answers each message "<backend>: <message>" until the client
// half-closes, and then ends with OK. A message "!CODE", CODE being a
// status code's name (OK, FAILED_PRECONDITION...), ends the call at once
// with that status, whether or not the client has half-closed: the server
// ends first.
func (e *echo) Chat(stream grpc.ServerStream) error {
	for {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if name, ok := strings.CutPrefix(in.GetValue(), "!"); ok {
			var code codes.Code
			if err := code.UnmarshalJSON([]byte(strconv.Quote(name))); err != nil {
				return status.Errorf(codes.InvalidArgument, "no status code %q", name)
			}
			return status.Errorf(code, "chat ended by %s", e.name) // nil for OK
		}
		if err := stream.SendMsg(wrapperspb.String(e.name + ": " + in.GetValue())); err != nil {
			return err
		}
	}
}

// echoClient calls the Echo service over conn.
type echoClient struct{ conn grpc.ClientConnInterface }

func (c echoClient) unary(ctx context.Context, method, in string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.conn.Invoke(ctx, "/"+echoService+"/"+method, wrapperspb.String(in), out, opts...)
	return out.GetValue(), err
}

func (c echoClient) Hello(ctx context.Context, in string, opts ...grpc.CallOption) (string, error) {
	return c.unary(ctx, "Hello", in, opts...)
}

func (c echoClient) Find(ctx context.Context, key string, opts ...grpc.CallOption) (string, error) {
	return c.unary(ctx, "Find", key, opts...)
}

func (c echoClient) Wait(ctx context.Context, opts ...grpc.CallOption) error {
	_, err := c.unary(ctx, "Wait", "", opts...)
	return err
}

// Count returns the n messages of a Count stream.
func (c echoClient) Count(ctx context.Context, n int, opts ...grpc.CallOption) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx) // ends the stream if we stop reading early
	defer cancel()
	stream, err := c.conn.NewStream(ctx, &countDesc, "/"+echoService+"/Count", opts...)
	if err != nil {
		return nil, err
	}
	// A SendMsg that fails with io.EOF means the stream ended; RecvMsg
	// below returns its status.
	if err := stream.SendMsg(wrapperspb.String(strconv.Itoa(n))); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var got []string
	for {
		out := new(wrapperspb.StringValue)
		err := stream.RecvMsg(out)
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		if len(got) == maxCount {
			return got, fmt.Errorf("the stream sent more than %d messages", maxCount)
		}
		got = append(got, out.GetValue())
	}
}

// Chat opens a Chat stream; the caller sends and receives
// *wrapperspb.StringValue messages on it.
func (c echoClient) Chat(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.conn.NewStream(ctx, &chatDesc, "/"+echoService+"/Chat", opts...)
}
