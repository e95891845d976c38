// Receiving wagate's packets toward Meta: one socket read in batches
// (recvmmsg) with kernel receive timestamps; over the measuring window it
// keeps each stream's arrivals against its RTP timestamps, for the
// packets' lateness and loss.

package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wagate/wagate/internal/kstamp"
)

type receiver struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	port int
	done chan struct{}
	t0   time.Time // arrivals count from here, on the monotonic clock

	msgs  [batch]mmsghdr
	iov   [batch]unix.Iovec
	names [batch]unix.RawSockaddrInet4
	bufs  []byte
	oobs  []byte

	mu      sync.Mutex
	on      bool
	streams map[netip.AddrPort]*stream
}

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// stream is one call's packets toward Meta in the window: arrival and
// extended timestamp of each.
type stream struct {
	arr  []int64 // arrival, ns after receiver.t0
	ts   []int64 // extended RTP timestamp
	last uint32
	ext  int64
	seq0 uint16 // the first sequence number in the window
	high int64  // the highest sequence number since, as an offset from seq0
	cnt  uint64
}

func listenReceiver(ip string) (*receiver, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(16 << 20)
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = kstamp.Enable(fd)
	}); err != nil || serr != nil {
		c.Close()
		return nil, fmt.Errorf("SO_TIMESTAMPNS: %v %v", err, serr)
	}
	r := &receiver{conn: c, rc: rc, port: c.LocalAddr().(*net.UDPAddr).Port, done: make(chan struct{}), t0: time.Now(),
		bufs: make([]byte, batch*pktSize), oobs: make([]byte, batch*oobSize), streams: map[netip.AddrPort]*stream{}}
	for i := range r.msgs {
		r.iov[i] = unix.Iovec{Base: &r.bufs[i*pktSize]}
		r.iov[i].SetLen(pktSize)
		r.msgs[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&r.names[i])), Iov: &r.iov[i], Control: &r.oobs[i*oobSize]}
		r.msgs[i].hdr.SetIovlen(1)
	}
	go r.loop()
	return r, nil
}

func (r *receiver) close() {
	r.conn.Close()
	<-r.done
}

func (r *receiver) loop() {
	defer close(r.done)
	for {
		for i := range r.msgs {
			r.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
			r.msgs[i].hdr.SetControllen(oobSize)
			r.msgs[i].hdr.Flags = 0
			r.msgs[i].n = 0
		}
		var got uintptr
		var errno syscall.Errno
		err := r.rc.Read(func(fd uintptr) bool {
			got, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), batch, unix.MSG_DONTWAIT, 0, 0)
			return errno != syscall.EAGAIN
		})
		if err != nil {
			return
		}
		if errno != 0 {
			continue
		}
		now := time.Now()
		r.mu.Lock()
		if r.on {
			for i := 0; i < int(got); i++ {
				r.take(i, now)
			}
		}
		r.mu.Unlock()
	}
}

// take records packet i of the last batch (RTP only; RTCP is skipped),
// read at now.
func (r *receiver) take(i int, now time.Time) {
	pkt := r.bufs[i*pktSize : i*pktSize+int(r.msgs[i].n)]
	if len(pkt) < 12 || pkt[0]>>6 != 2 || (pkt[1] >= 192 && pkt[1] <= 223) {
		return
	}
	from := netip.AddrPortFrom(netip.AddrFrom4(r.names[i].Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&r.names[i].Port))[:]))
	at := kstamp.Arrival(r.oobs[i*oobSize:i*oobSize+int(r.msgs[i].hdr.Controllen)], now)
	s := r.streams[from]
	seq, ts := binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:])
	if s == nil {
		s = &stream{last: ts, arr: make([]int64, 0, 1600), ts: make([]int64, 0, 1600), seq0: seq}
		r.streams[from] = s
	}
	s.ext += int64(int32(ts - s.last))
	s.last = ts
	s.arr = append(s.arr, int64(at.Sub(r.t0)))
	s.ts = append(s.ts, s.ext)
	if d := int64(int16(seq - s.seq0)); d > s.high {
		s.high = d
	}
	s.cnt++
}

func (r *receiver) startWindow() {
	r.mu.Lock()
	r.on = true
	clear(r.streams)
	r.mu.Unlock()
}

// endWindow returns every packet's lateness against its stream's grid
// (sorted), the packet count, packets lost (by sequence) and the streams.
func (r *receiver) endWindow() ([]time.Duration, uint64, uint64, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	var late []time.Duration
	var pkts, lost uint64
	for _, s := range r.streams {
		best := int64(1<<63 - 1)
		off := make([]int64, len(s.arr))
		for i := range s.arr {
			// Media time at 48 kHz (Opus) or 8 kHz (PCMU): the step of
			// 20 ms tells which.
			off[i] = s.arr[i] - s.ts[i]*int64(time.Second)/int64(rate(s))
			best = min(best, off[i])
		}
		for _, o := range off {
			late = append(late, time.Duration(o-best))
		}
		pkts += s.cnt
		if exp := uint64(s.high) + 1; exp > s.cnt {
			lost += exp - s.cnt
		}
	}
	slices.Sort(late)
	return late, pkts, lost, len(r.streams)
}

// rate guesses a stream's clock from its timestamp step.
func rate(s *stream) int {
	for i := 1; i < len(s.ts); i++ {
		if d := s.ts[i] - s.ts[i-1]; d > 0 {
			if d%960 == 0 {
				return 48000
			}
			return 8000
		}
	}
	return 48000
}
