// Package etcd is a [discovery.Source] that reads a service's backends from
// the keys under an etcd prefix, one backend per key, and watches them.
//
// A key's value is either a bare URL ("http://10.0.0.1:8080") or a JSON
// object with the fields of [discovery.Target]:
//
//	{"url": "http://10.0.0.2:8080", "weight": 3, "backup": false,
//	 "draining": false, "zone": "eu-west-1a", "metadata": {"version": "1.4"}}
//
// The source reads the whole prefix once, then watches it from the next
// revision and pushes the whole set after every change, in key order. A key
// whose value is not a backend is skipped and logged (see [WithLogger]),
// never the whole set. When the connection to etcd is lost the source
// pushes an error (the watcher keeps the last set) and, once connected
// again, goes on from the last revision it saw, so nothing that changed
// meanwhile is missed; if that revision has been compacted away it reads
// the whole prefix again. This is the pattern of etcd's own
// client/v3/naming/endpoints (a Get, then a Watch from its revision + 1).
package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tinylb/lb/discovery"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors the source pushes or returns; match them with [errors.Is].
var (
	// ErrDisconnected is pushed when the client's connection to etcd
	// fails. The source goes on: the watch resumes where it stopped once
	// the connection is back, and the set is pushed again then.
	ErrDisconnected = errors.New("etcd: connection lost")
	// ErrClientClosed is returned by Run when the client it was given is
	// closed: the source cannot go on.
	ErrClientClosed = errors.New("etcd: client closed")
	// ErrNoClient is returned by Run when [New] was given a nil client.
	ErrNoClient = errors.New("etcd: no client")
)

// Source watches the backends listed under one etcd prefix. Make it with
// [New]; it may be run again after Run returns.
type Source struct {
	client *clientv3.Client
	prefix string
	opts   options
}

var _ discovery.Source = (*Source)(nil)

// New returns a source of the backends under prefix, read with client. The
// prefix is matched as a string, so "/services/api/" is safer than
// "/services/api", which also takes in "/services/api2/...". The source
// does not close client.
func New(client *clientv3.Client, prefix string, opts ...Option) *Source {
	return &Source{client: client, prefix: prefix, opts: newOptions(opts)}
}

// Run pushes the set under the prefix when first read and after every
// change, and an error when it cannot read or watch the prefix, until ctx
// ends (then it returns nil). It returns [ErrClientClosed] if the client is
// closed. Run starts one goroutine, which watches the connection's state,
// and waits for it before returning.
func (s *Source) Run(ctx context.Context, push func(set []discovery.Target, err error)) error {
	if s.client == nil {
		return ErrNoClient
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn := make(chan bool, 1)
	if cc := s.client.ActiveConnection(); cc != nil {
		wg.Go(func() { watchConn(ctx, cc, conn) })
	}
	r := &run{src: s, push: push, conn: conn, entries: map[string]entry{}}
	return r.loop(ctx)
}

// String describes the source for logs.
func (s *Source) String() string { return fmt.Sprintf("etcd prefix %q", s.prefix) }
