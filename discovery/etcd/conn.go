package etcd

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// watchConn reports whether the client's connection is up, each time that
// changes, until ctx ends. It is needed because etcd's watcher hides an
// outage: while no endpoint answers, it retries by itself and the watch
// channel just stays quiet (clientv3 watch.go, watchGRPCStream.run), so
// only the connection's state tells a quiet prefix from a lost server.
// Down means TRANSIENT_FAILURE (an attempt to connect failed), up means
// READY; the states in between (IDLE, CONNECTING) change nothing.
//
// Only the latest news is kept in out (a channel with room for one), so
// this goroutine never blocks on a reader that is busy reading the prefix.
func watchConn(ctx context.Context, conn *grpc.ClientConn, out chan bool) {
	state := conn.GetState()
	for {
		switch state {
		case connectivity.Ready:
			offer(out, true)
		case connectivity.TransientFailure:
			offer(out, false)
		}
		if !conn.WaitForStateChange(ctx, state) {
			return
		}
		state = conn.GetState()
	}
}

// offer replaces what out holds with v. It has a single sender, so the
// send after the drain cannot block.
func offer(out chan bool, v bool) {
	select {
	case <-out:
	default:
	}
	out <- v
}
