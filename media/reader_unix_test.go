//go:build unix

package media

import (
	"net"
	"syscall"
	"testing"
	"unsafe"
)

// BenchmarkEmptyRead is the read a reader makes after the last datagram
// of a wake-up, the one that finds the socket empty (EAGAIN) and sends
// the reader back to the poller. Set against a relayed packet's whole
// cost (docs/performance.md) it says what batching the reads with
// recvmmsg could save.
func BenchmarkEmptyRead(b *testing.B) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var buf [packetBufSize]byte
	var rsa syscall.RawSockaddrAny
	err = raw.Read(func(fd uintptr) bool {
		for b.Loop() {
			alen := uint32(syscall.SizeofSockaddrAny)
			_, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), packetBufSize,
				0, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&alen)))
			if e != syscall.EAGAIN {
				b.Fatalf("recvfrom on an empty socket: %v, want EAGAIN", e)
			}
		}
		return true
	})
	if err != nil {
		b.Fatal(err)
	}
}
