// Package staleconn is an HTTP/1.1 server for tests whose connections go
// stale as a real service's do: each answers its first request and
// closes, unanswered, under the second, as a service or load balancer
// closing an idle kept-alive connection does when a request crosses its
// idle timeout. A client that takes that for the service failing (rather
// than sending the request again on a new connection) fails such tests.
package staleconn

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// Server is a started stale-connection server on loopback.
type Server struct {
	// Addr is its host:port.
	Addr string

	mu       sync.Mutex
	keys     []string
	answered int
	dropped  int
}

// Start serves on 127.0.0.1 until the test ends. answer gives the whole
// response (status line, headers, body) to the n-th request answered,
// counting from 0 over all connections.
func Start(t testing.TB, answer func(n int) []byte) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &Server{Addr: ln.Addr().String()}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn, answer)
		}
	}()
	return s
}

func (s *Server) serve(conn net.Conn, answer func(n int) []byte) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; ; i++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		s.mu.Lock()
		s.keys = append(s.keys, req.Header.Get("Idempotency-Key"))
		if i > 0 {
			s.dropped++ // its idle timeout passed as the request came
			s.mu.Unlock()
			return
		}
		n := s.answered
		s.answered++
		s.mu.Unlock()
		conn.Write(answer(n))
	}
}

// Keys are the Idempotency-Key headers of every request read, in order.
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// Answered counts the requests answered.
func (s *Server) Answered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answered
}

// Dropped counts the requests a connection closed under, unanswered.
func (s *Server) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}
