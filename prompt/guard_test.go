package prompt

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// loopbackAllowed lets the tests' file servers (httptest, 127.0.0.1) be
// fetched from; nothing else on loopback.
var loopbackAllowed = Allow{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

func TestAddrClass(t *testing.T) {
	for _, c := range []struct {
		ip, want string
	}{
		{"0.0.0.0", ClassUnspecified},
		{"0.1.2.3", ClassUnspecified},
		{"::", ClassUnspecified},
		{"127.0.0.1", ClassLoopback},
		{"127.255.255.254", ClassLoopback},
		{"::1", ClassLoopback},
		{"10.0.0.1", ClassPrivate},
		{"172.16.0.1", ClassPrivate},
		{"172.31.255.255", ClassPrivate},
		{"192.168.1.1", ClassPrivate},
		{"fd00::1", ClassPrivate},
		{"fd00:ec2::254", ClassPrivate}, // AWS's IPv6 metadata service
		{"fc00::1", ClassPrivate},
		{"fec0::1", ClassPrivate},
		{"169.254.169.254", ClassLinkLocal},
		{"fe80::1", ClassLinkLocal},
		{"fe80::1%eth0", ClassLinkLocal},
		{"100.64.0.1", ClassCGNAT},
		{"100.127.255.255", ClassCGNAT},
		{"224.0.0.1", ClassMulticast},
		{"239.255.255.250", ClassMulticast},
		{"ff02::1", ClassMulticast},
		{"ff0e::1", ClassMulticast},
		{"255.255.255.255", ClassReserved},
		{"240.0.0.1", ClassReserved},
		{"192.0.2.10", ClassReserved},
		{"2001:db8::1", ClassReserved},
		// IPv4 inside IPv6 is judged as the IPv4 address it reaches.
		{"::ffff:127.0.0.1", ClassLoopback},
		{"::ffff:169.254.169.254", ClassLinkLocal},
		{"::ffff:10.1.2.3", ClassPrivate},
		{"::ffff:0.0.0.0", ClassUnspecified},
		{"::127.0.0.1", ClassReserved}, // IPv4-compatible
		{"64:ff9b::a9fe:a9fe", ClassLinkLocal},
		{"64:ff9b::7f00:1", ClassLoopback},
		{"2002:7f00:1::1", ClassLoopback},
		{"2002:c0a8:101::1", ClassPrivate},
		// Public unicast.
		{"8.8.8.8", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""},
		{"2002:808:808::1", ""},
		{"2606:4700:4700::1111", ""},
	} {
		ip := netip.MustParseAddr(c.ip)
		if got := AddrClass(ip); got != c.want {
			t.Errorf("AddrClass(%s) = %q, want %q", c.ip, got, c.want)
		}
	}
	if got := AddrClass(netip.Addr{}); got == "" {
		t.Error("the zero Addr is public")
	}
}

func TestAllowMatches(t *testing.T) {
	a := Allow{
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd12::/64")},
		Hosts:    []string{"media.corp.example", "*.cdn.internal"},
	}
	for ip, ok := range map[string]bool{
		"10.20.3.4": true, "::ffff:10.20.3.4": true, "10.21.0.1": false, "fd12::9": true,
		"fd13::9": false, "127.0.0.1": false, "8.8.8.8": true,
	} {
		if err := a.checkIP(netip.MustParseAddr(ip)); (err == nil) != ok || (err != nil && !errors.Is(err, ErrDenied)) {
			t.Errorf("checkIP(%s) = %v, want allowed %v", ip, err, ok)
		}
	}
	for host, ok := range map[string]bool{
		"media.corp.example": true, "MEDIA.corp.example.": true, "x.media.corp.example": false,
		"a.cdn.internal": true, "a.b.cdn.internal": true, "cdn.internal": false, "evilcdn.internal": false,
		"": false, "10.20.3.4": false,
	} {
		if got := a.allowsHost(host); got != ok {
			t.Errorf("allowsHost(%q) = %v, want %v", host, got, ok)
		}
	}
}

// countingServer is an httptest server on ip (loopback) that counts its
// requests and serves h.
func countingServer(t *testing.T, ip string, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestLoopbackFileNeedsAllow: a file on loopback is refused before any
// connection unless the operator allowed the address or the name; a name
// that resolves to loopback is refused when dialed.
func TestLoopbackFileNeedsAllow(t *testing.T) {
	wav := testWAV(t)
	srv, hits := countingServer(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) { w.Write(wav) })
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	byName := "http://localhost:" + port + "/tone.wav"
	ctx := context.Background()

	denied := newLib(t, Options{})
	for _, u := range []string{srv.URL + "/tone.wav", byName} {
		_, err := denied.File(ctx, u, Rate8k)
		if !errors.Is(err, ErrDenied) || FileReason(err) != ReasonDenied || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("%s without an allowlist: error %v; want it denied as loopback", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server got %d requests from denied fetches", n)
	}

	for name, allow := range map[string]Allow{
		"prefix": loopbackAllowed,
		"host":   {Hosts: []string{"localhost"}},
	} {
		l := newLib(t, Options{Files: FileOptions{Allow: allow}})
		u := srv.URL + "/tone.wav"
		if name == "host" {
			u = byName
		}
		if a, err := l.File(ctx, u, Rate8k); err != nil || len(a.Samples) == 0 {
			t.Fatalf("%s allowed: %d samples, error %v", name, len(a.Samples), err)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("the server got %d requests, want 2 (one per allowed library)", n)
	}
}

// TestTrustedFileSkipsTheCheck: the operator's own URL (TrustedFile) is
// fetched from loopback without an allowlist, while File of the same URL
// stays refused and is not answered from the operator's download in flight.
func TestTrustedFileSkipsTheCheck(t *testing.T) {
	wav := testWAV(t)
	srv, hits := countingServer(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) { w.Write(wav) })
	l := newLib(t, Options{})
	ctx := context.Background()
	if _, err := l.File(ctx, srv.URL+"/hold.wav", Rate8k); !errors.Is(err, ErrDenied) {
		t.Fatalf("File: error %v, want it denied", err)
	}
	if a, err := l.TrustedFile(ctx, srv.URL+"/hold.wav", Rate8k); err != nil || len(a.Samples) == 0 {
		t.Fatalf("TrustedFile: %d samples, error %v", len(a.Samples), err)
	}
	if _, err := l.File(ctx, srv.URL+"/other.wav", Rate8k); !errors.Is(err, ErrDenied) {
		t.Fatalf("File of another URL on the trusted server: error %v, want it denied", err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the server got %d requests, want 1 (the trusted one)", n)
	}
	if s := l.Stats(); s.DownloadsRefused != 2 || s.DownloadErrors != 2 {
		t.Fatalf("stats %+v: want the two refused fetches counted as refused download errors", s)
	}
}

// TestRedirectToDeniedAddress: an allowed server that redirects to an
// address nobody allowed (another loopback address, by IP or by a name
// resolving to it) does not get the second server fetched.
func TestRedirectToDeniedAddress(t *testing.T) {
	wav := testWAV(t)
	inner, innerHits := countingServer(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) { w.Write(wav) })
	outer, _ := countingServer(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/by-ip":
			http.Redirect(w, r, inner.URL+"/tone.wav", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	})
	l := newLib(t, Options{Files: FileOptions{Allow: loopbackAllowed}})
	_, err := l.File(context.Background(), outer.URL+"/by-ip", Rate8k)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "redirected to") || FileReason(err) != ReasonDenied {
		t.Fatalf("redirect to 127.0.0.2: error %v; want it denied", err)
	}
	_, err = l.File(context.Background(), outer.URL+"/loop", Rate8k)
	if err == nil || !strings.Contains(err.Error(), "redirects") || FileReason(err) != ReasonFailed {
		t.Fatalf("endless redirects: error %v", err)
	}
	if n := innerHits.Load(); n != 0 {
		t.Fatalf("the denied server got %d requests", n)
	}

	// A name allowed by the operator may redirect to a name that
	// resolves to a denied address: the dialer refuses it.
	named := newLib(t, Options{Files: FileOptions{Allow: Allow{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}}})
	redir, _ := countingServer(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		_, p, _ := net.SplitHostPort(outer.Listener.Addr().String())
		http.Redirect(w, r, "http://localhost:"+p+"/by-ip", http.StatusFound)
	})
	_, err = named.File(context.Background(), redir.URL+"/x", Rate8k)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "is a loopback address") {
		t.Fatalf("redirect to localhost: error %v; want the dialer to deny its loopback address", err)
	}
}

// testWAV is half a second of 600 Hz, 8 kHz mono.
func testWAV(t *testing.T) []byte {
	t.Helper()
	return makeWAV(t, wavSpec{code: wavPCM, channels: 1, rate: 8000, bits: 16}, []float64{600}, 4000)
}

// FuzzAddrClass: an IPv4 address is judged the same written in any of the
// IPv6 forms that reach it (mapped; NAT64 and 6to4 when it is not public),
// and the dialer's check agrees with the class.
func FuzzAddrClass(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "169.254.169.254", "10.1.2.3", "8.8.8.8", "0.0.0.0", "100.64.1.1", "224.1.1.1"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 4 {
			return
		}
		v4 := netip.AddrFrom4([4]byte(b))
		class := AddrClass(v4)
		mapped := netip.AddrFrom16(v4.As16())
		if c := AddrClass(mapped); c != class {
			t.Fatalf("%s is %q but %s is %q", v4, class, mapped, c)
		}
		if class != "" {
			var n64, s2 [16]byte
			copy(n64[:], netip.MustParseAddr("64:ff9b::").AsSlice())
			copy(n64[12:], b)
			s2[0], s2[1] = 0x20, 0x02
			copy(s2[2:6], b)
			for _, ip := range []netip.Addr{netip.AddrFrom16(n64), netip.AddrFrom16(s2)} {
				if AddrClass(ip) == "" {
					t.Fatalf("%s (%s, %s) is public", ip, v4, class)
				}
			}
		}
		if err := (Allow{}).checkIP(mapped); (err != nil) != (class != "") {
			t.Fatalf("checkIP(%s) = %v for class %q", mapped, err, class)
		}
	})
}
