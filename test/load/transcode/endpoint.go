// Endpoints: one shared UDP socket per side with batched I/O
// (sendmmsg/recvmmsg), receive timestamps, and the kernel's UDP drop
// counters.

package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wagate/wagate/internal/kstamp"
)

// mmsghdr is struct mmsghdr of sendmmsg(2)/recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// endpoint is one UDP socket shared by the streams of one side.
type endpoint struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	addr netip.AddrPort

	mu      sync.RWMutex
	streams map[netip.AddrPort]*stream // by the remote (wagate) address

	unmatched atomic.Uint64 // packets from no registered stream's remote
	polled    bool
	done      chan struct{}
	in        *recvBatch

	// Send batch: the pacer's only.
	out      [batch]mmsghdr
	outIov   [batch]unix.Iovec
	outName  [batch]unix.RawSockaddrInet4
	outBuf   []byte // batch × pktSize
	outN     int
	sendErrs uint64
}

// listenEndpoint binds a shared socket on ip. A polled endpoint is read by
// the pacer after each tick (drain): no goroutine is woken per packet, and
// the kernel's arrival timestamps keep the timing exact. Otherwise a
// goroutine of its own reads it as packets arrive (the echo, which must
// answer at once).
func listenEndpoint(ip string, polled bool) (*endpoint, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		return nil, err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = rc.Control(func(fd uintptr) {
		// Room for bursts: wagate sends every call's packets here.
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 8<<20) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
		}
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
		_ = kstamp.Enable(fd)
	})
	e := &endpoint{conn: conn, rc: rc, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), polled: polled,
		streams: map[netip.AddrPort]*stream{}, done: make(chan struct{}), outBuf: make([]byte, batch*pktSize),
		in: newRecvBatch()}
	if polled {
		close(e.done)
	} else {
		go e.readLoop()
	}
	return e, nil
}

func (e *endpoint) port() int { return int(e.addr.Port()) }

func (e *endpoint) close() {
	e.conn.Close()
	<-e.done
}

func (e *endpoint) register(s *stream) {
	e.mu.Lock()
	e.streams[s.remote] = s
	e.mu.Unlock()
}

func (e *endpoint) unregister(s *stream) {
	e.mu.Lock()
	if e.streams[s.remote] == s {
		delete(e.streams, s.remote)
	}
	e.mu.Unlock()
}

// slot returns the buffer of the next packet in the send batch, flushing a
// full batch first.
func (e *endpoint) slot() []byte {
	if e.outN == batch {
		e.flush()
	}
	return e.outBuf[e.outN*pktSize : (e.outN+1)*pktSize]
}

// queue adds the packet just written into slot() (n bytes) for dst.
func (e *endpoint) queue(n int, dst netip.AddrPort) {
	i := e.outN
	e.outIov[i] = unix.Iovec{Base: &e.outBuf[i*pktSize]}
	e.outIov[i].SetLen(n)
	e.outName[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&e.outName[i].Port))[:], dst.Port())
	h := &e.out[i].hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&e.outName[i])), Namelen: unix.SizeofSockaddrInet4, Iov: &e.outIov[i]}
	h.SetIovlen(1)
	e.outN++
}

// flush sends the queued packets with sendmmsg (bounded retries).
func (e *endpoint) flush() {
	sent := 0
	for tries := 0; sent < e.outN && tries < 4*batch; tries++ {
		var n uintptr
		var errno syscall.Errno
		err := e.rc.Write(func(fd uintptr) bool {
			n, _, errno = syscall.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&e.out[sent])), uintptr(e.outN-sent), 0, 0, 0)
			return errno != syscall.EAGAIN
		})
		switch {
		case err != nil: // closed
			e.sendErrs += uint64(e.outN - sent)
			sent = e.outN
		case errno == syscall.EINTR:
		case errno != 0:
			// A message that cannot be sent is skipped; the rest go on.
			e.sendErrs++
			sent++
		default:
			sent += int(n)
		}
	}
	e.outN = 0
}

// recvBatch is the receive side of recvmmsg: buffers for a batch.
type recvBatch struct {
	msgs  [batch]mmsghdr
	iov   [batch]unix.Iovec
	names [batch]unix.RawSockaddrInet4
	bufs  []byte
	oobs  []byte
	dbuf  []byte
}

func newRecvBatch() *recvBatch {
	b := &recvBatch{bufs: make([]byte, batch*pktSize), oobs: make([]byte, batch*oobSize), dbuf: make([]byte, pktSize)}
	for i := range b.msgs {
		b.iov[i] = unix.Iovec{Base: &b.bufs[i*pktSize]}
		b.iov[i].SetLen(pktSize)
		b.msgs[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Iov: &b.iov[i], Control: &b.oobs[i*oobSize]}
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// recv reads up to a batch with recvmmsg; wait blocks (through Go's
// poller) until something arrives. It returns the count, and closed once
// the socket is closed.
func (e *endpoint) recv(wait bool) (n int, closed bool) {
	b := e.in
	for i := range b.msgs {
		b.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		b.msgs[i].hdr.SetControllen(oobSize)
		b.msgs[i].hdr.Flags = 0
		b.msgs[i].n = 0
	}
	var got uintptr
	var errno syscall.Errno
	err := e.rc.Read(func(fd uintptr) bool {
		got, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), batch, unix.MSG_DONTWAIT, 0, 0)
		return !wait || errno != syscall.EAGAIN
	})
	if err != nil {
		return 0, true
	}
	if errno != 0 {
		return 0, false
	}
	return int(got), false
}

// dispatch hands the n packets of the last recv to their streams.
func (e *endpoint) dispatch(n int) {
	b := e.in
	now := time.Now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	for i := 0; i < n; i++ {
		from := netip.AddrPortFrom(netip.AddrFrom4(b.names[i].Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&b.names[i].Port))[:]))
		s := e.streams[from]
		if s == nil {
			e.unmatched.Add(1)
			continue
		}
		at := kstamp.Arrival(b.oobs[i*oobSize:i*oobSize+int(b.msgs[i].hdr.Controllen)], now)
		s.handle(b.bufs[i*pktSize:i*pktSize+int(b.msgs[i].n)], b.dbuf, at)
	}
}

// drain reads and dispatches what has arrived (a polled endpoint, from the
// pacer), bounded so one tick cannot run away.
func (e *endpoint) drain() {
	for range 64 {
		n, closed := e.recv(false)
		if closed || n == 0 {
			return
		}
		e.dispatch(n)
		if n < batch {
			return
		}
	}
}

func (e *endpoint) readLoop() {
	defer close(e.done)
	for {
		n, closed := e.recv(true)
		if closed {
			return
		}
		e.dispatch(n)
	}
}

// udpDrops reads /proc/net/udp: the receive-queue drops of every UDP
// socket bound to ip, by local port, and their sum.
func udpDrops(ip netip.Addr) (map[uint16]uint64, uint64, error) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	a4 := ip.As4()
	want := strings.ToUpper(hex.EncodeToString([]byte{a4[3], a4[2], a4[1], a4[0]})) // little-endian on x86/arm64
	out := map[uint16]uint64{}
	var sum uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || fs[0] == "sl" {
			continue
		}
		h, p, ok := strings.Cut(fs[1], ":")
		if !ok || h != want {
			continue
		}
		port, err := strconv.ParseUint(p, 16, 16)
		if err != nil {
			continue
		}
		d, _ := strconv.ParseUint(fs[len(fs)-1], 10, 64)
		out[uint16(port)] += d
		sum += d
	}
	return out, sum, sc.Err()
}
