package main

// A bystander: a TCP listener whose address a stranger writes into the
// Via of its INVITEs (-payload invite-via). Every connection wagate opens
// to it is wagate acting on a stranger's Via, which it should never do.

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

var statusLine = []byte("SIP/2.0 ")

type victim struct {
	ln    net.Listener
	conns atomic.Int64
	bytes atomic.Int64
	resps atomic.Int64 // SIP responses among the bytes
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []net.Conn // closed by stop
}

func startVictim(ip string) (*victim, error) {
	ln, err := net.Listen("tcp4", ip+":0")
	if err != nil {
		return nil, err
	}
	v := &victim{ln: ln}
	v.wg.Add(1)
	go v.accept()
	return v, nil
}

func (v *victim) addr() *net.TCPAddr { return v.ln.Addr().(*net.TCPAddr) }

func (v *victim) accept() {
	defer v.wg.Done()
	for {
		c, err := v.ln.Accept()
		if err != nil {
			return // closed by stop
		}
		v.conns.Add(1)
		v.mu.Lock()
		v.open = append(v.open, c)
		v.mu.Unlock()
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			defer c.Close()
			// Read what wagate sends until stop closes c, or wagate
			// sends nothing for a minute.
			buf := make([]byte, 4096)
			var carry []byte // a start line split across reads
			for {
				_ = c.SetReadDeadline(time.Now().Add(time.Minute))
				n, err := c.Read(buf)
				v.bytes.Add(int64(n))
				b := append(carry, buf[:n]...)
				v.resps.Add(int64(bytes.Count(b, statusLine)))
				carry = append([]byte(nil), b[max(0, len(b)-len(statusLine)+1):]...)
				if err != nil {
					return
				}
			}
		}()
	}
}

// stop closes the listener and the connections wagate made, and waits
// for their readers.
func (v *victim) stop() {
	v.ln.Close()
	v.mu.Lock()
	for _, c := range v.open {
		c.Close()
	}
	v.mu.Unlock()
	v.wg.Wait()
}
