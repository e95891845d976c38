// Command edgeprobe drives a running wagate's SIP edge with hostile but
// bounded traffic from a configured endpoint's address, over loopback, and
// prints wagate's cost every few seconds: RSS, threads and descriptors
// (/proc/<pid>), CPU time, go_goroutines and heap (/metrics), calls, ports
// and the edge's counters (/v1/status). It is the probe behind the numbers
// in docs/security.md; test/load/flood covers strangers.
//
// Start wagate first, e.g. with this config (the pbx endpoint .3 and the
// dialer .4 are where attacks come from; a SIPp UAS on .3:5060 answers the
// calls of -kind invite-noack):
//
//	sip:
//	  listen:
//	    - {transport: udp, address: "127.0.73.1:15073"}
//	    - {transport: tcp, address: "127.0.73.1:15073"}
//	  host: 127.0.73.1
//	  tcp: {idle_timeout: 20s}
//	endpoints:
//	  - {name: meta, kind: whatsapp, host: 127.0.73.2, port: 5060, transport: udp, source_cidrs: [127.0.73.2/32], codecs: [PCMU, PCMA], media_encryption: none}
//	  - {name: pbx, kind: pbx, host: 127.0.73.3, port: 5060, transport: udp, source_cidrs: [127.0.73.3/32], codecs: [PCMU, PCMA]}
//	  - {name: dialer, kind: dialer, host: 127.0.73.4, port: 5060, transport: udp, source_cidrs: [127.0.73.4/32]}
//	numbers:
//	  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}, dialers: [dialer]}
//	media: {bind_ip: 127.0.73.1, port_min: 31000, port_max: 31999}
//	api: {listen: "127.0.73.1:18073"}
//
// Runs behind docs/security.md (P is wagate's pid):
//
//	go run ./test/load/edgeprobe -pid $P -mode noread -n 60000 -hold 60s
//	go run ./test/load/edgeprobe -pid $P -mode noreadmany -k 60 -n 8000 -drain -hold 30s
//	go run ./test/load/edgeprobe -pid $P -mode udpflood -kind stray200 -rate 500 -d 4s
//	go run ./test/load/edgeprobe -pid $P -mode udpflood -kind bye -src 127.0.73.4 -rate 3000 -d 8s -tail 10s
//	go run ./test/load/edgeprobe -pid $P -mode udpflood -kind reinvite -src 127.0.73.4 -rate 2000 -d 5s -tail 35s
//	go run ./test/load/edgeprobe -pid $P -mode udpflood -kind invite-noack -ruser +15559999999 -src 127.0.73.2 -rate 1000 -d 10s -tail 10s
//	go run ./test/load/edgeprobe -pid $P -mode slowhdr -n 60 -every 1ms -hold 25s
//
// Every run is bounded: at most -n messages or connections, -rate·-d
// datagrams, -hold and -tail of watching (each at most 5 minutes), and
// only loopback addresses.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	mode     = flag.String("mode", "snap", "snap, slowhdr, bigcl, halfopen, pipeline, oversize, noread, noreadmany or udpflood")
	target   = flag.String("to", "127.0.73.1:15073", "wagate's SIP address (loopback)")
	api      = flag.String("api", "http://127.0.73.1:18073", "wagate's API, for /v1/status and /metrics")
	src      = flag.String("src", "127.0.73.3", "source address of the attack (an endpoint's, to get past the edge)")
	pid      = flag.Int("pid", 0, "wagate's process id, for /proc")
	n        = flag.Int("n", 100, "connections (slowhdr, bigcl, halfopen) or messages per connection (pipeline, noread, noreadmany)")
	rate     = flag.Int("rate", 500, "udpflood: messages per second")
	dur      = flag.Duration("d", 5*time.Second, "udpflood: how long to send")
	hold     = flag.Duration("hold", 30*time.Second, "how long connections are held and watched")
	tail     = flag.Duration("tail", 40*time.Second, "udpflood: how long to watch after the flood")
	kind     = flag.String("kind", "bye", "udpflood: bye, cancel, options, ack, reinvite, stray200, stray200same, invite-noack, invite-retrans, resp")
	pad      = flag.String("pad", "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", "slowhdr: the header line repeated after the request's headers")
	every    = flag.Duration("every", 200*time.Millisecond, "slowhdr: the pause between bytes")
	bad      = flag.Bool("bad", false, "noread: leave out Max-Forwards, so the edge answers each request itself (400)")
	smallbuf = flag.Bool("smallbuf", false, "noread: a 4 KiB receive buffer")
	ruser    = flag.String("ruser", "+15550100001", "the Request-URI user")
	useTLS   = flag.Bool("tls", false, "noread: over TLS (-to the TLS listener)")
	kconns   = flag.Int("k", 60, "noreadmany: connections")
	drain    = flag.Bool("drain", false, "noreadmany: read (and discard) the answers")
)

func snap(label string) {
	var rss, thr string
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", *pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				rss = strings.TrimSpace(l[6:])
			}
			if strings.HasPrefix(l, "Threads:") {
				thr = strings.TrimSpace(l[8:])
			}
		}
	}
	fds := -1
	if d, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", *pid)); err == nil {
		fds = len(d)
	}
	gor := ""
	if r, err := http.Get(*api + "/metrics"); err == nil {
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "go_goroutines ") || strings.HasPrefix(sc.Text(), "go_memstats_heap_inuse_bytes ") {
				gor += sc.Text() + " "
			}
		}
		r.Body.Close()
	}
	var st struct {
		Edge  json.RawMessage `json:"sip_edge"`
		Calls int             `json:"calls"`
		Ports int             `json:"ports_in_use"`
		Over  json.RawMessage `json:"overload_refusals"`
	}
	if r, err := http.Get(*api + "/v1/status"); err == nil {
		json.NewDecoder(r.Body).Decode(&st)
		r.Body.Close()
	}
	var cpu string
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", *pid)); err == nil {
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		u, _ := strconv.Atoi(f[11])
		s, _ := strconv.Atoi(f[12])
		cpu = fmt.Sprintf("%.2fs", float64(u+s)/100)
	}
	fmt.Printf("[%s] %s rss=%s thr=%s fds=%d cpu=%s %s calls=%d ports=%d edge=%s over=%s\n", time.Now().Format("15:04:05"), label, rss, thr, fds, cpu, gor, st.Calls, st.Ports, st.Edge, st.Over)
}

func dialTCP(from string) net.Conn {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp4", *target)
	if err != nil {
		fmt.Println("dial:", err)
		return nil
	}
	return c
}

func req(method, tr, from string, lport int, callID, toTag string, cseq int, extra, body string) string {
	tt := ""
	if toTag != "" {
		tt = ";tag=" + toTag
	}
	return fmt.Sprintf("%s sip:"+*ruser+"@%s SIP/2.0\r\nVia: SIP/2.0/%s %s:%d;branch=z9hG4bK-%s-%d\r\n"+
		"From: <sip:+447700900123@%s>;tag=f-%s\r\nTo: <sip:+15550100001@%s>%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n"+
		"Max-Forwards: 70\r\nContact: <sip:u@%s:%d>\r\n%sContent-Length: %d\r\n\r\n%s",
		method, *target, tr, from, lport, callID, cseq, from, callID, *target, tt, callID, cseq, method, from, lport, extra, len(body), body)
}

// watch reports whether c was closed by wagate and when.
func watch(c net.Conn, closed *atomic.Int64, got *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Minute))
		k, err := c.Read(buf)
		if k > 0 {
			got.Add(int64(bytes.Count(buf[:k], []byte("SIP/2.0 "))))
		}
		if err != nil {
			closed.Add(1)
			return
		}
	}
}

func main() {
	flag.Parse()
	if err := validate(); err != nil {
		fmt.Fprintln(os.Stderr, "edgeprobe:", err)
		os.Exit(2)
	}
	snap("before")
	switch *mode {
	case "snap":
	case "slowhdr", "bigcl", "halfopen":
		// n connections from src; slowhdr: request line + 1 header byte per 500 ms, never ending;
		// bigcl: whole header with Content-Length 20000, 10 bytes of body, then silence;
		// halfopen: connect, nothing.
		var closed, got atomic.Int64
		var wg sync.WaitGroup
		var conns []net.Conn
		start := time.Now()
		for i := 0; i < *n; i++ {
			c := dialTCP(*src)
			if c == nil {
				break
			}
			conns = append(conns, c)
			wg.Add(1)
			go watch(c, &closed, &got, &wg)
			switch *mode {
			case "bigcl":
				c.Write([]byte(req("OPTIONS", "TCP", *src, 5060, fmt.Sprintf("bigcl-%d", i), "", 1, "", "")[:0]))
				m := req("OPTIONS", "TCP", *src, 5060, fmt.Sprintf("bigcl-%d", i), "", 1, "", strings.Repeat("x", 20000))
				c.Write([]byte(m[:len(m)-20000+10]))
			case "slowhdr":
				go func(c net.Conn, i int) {
					m := req("OPTIONS", "TCP", *src, 5060, fmt.Sprintf("slow-%d", i), "", 1, strings.Repeat(*pad, 100000/len(*pad)), "")
					for j := 0; j < len(m) && time.Since(start) < *hold; j++ {
						if _, err := c.Write([]byte{m[j]}); err != nil {
							return
						}
						time.Sleep(*every)
					}
				}(c, i)
			}
		}
		fmt.Printf("opened %d conns\n", len(conns))
		for t := time.Duration(0); t < *hold; t += 5 * time.Second {
			time.Sleep(5 * time.Second)
			snap(fmt.Sprintf("t+%v closed=%d responses=%d", time.Since(start).Round(time.Second), closed.Load(), got.Load()))
		}
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		time.Sleep(2 * time.Second)
		snap("after close")
	case "pipeline":
		c := dialTCP(*src)
		var all bytes.Buffer
		for i := 0; i < *n; i++ {
			all.WriteString(req("OPTIONS", "TCP", *src, 5060, fmt.Sprintf("pipe-%d", i), "", 1, "", ""))
		}
		c.Write(all.Bytes())
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(c, 10<<20))
		fmt.Printf("pipelined %d OPTIONS (%d bytes) -> %d responses, %d '200 OK'\n", *n, all.Len(), bytes.Count(b, []byte("SIP/2.0 ")), bytes.Count(b, []byte("SIP/2.0 200")))
		c.Close()
	case "oversize":
		// a Content-Length over the max, then a header that never ends over the max
		for _, m := range []string{
			req("OPTIONS", "TCP", *src, 5060, "over-cl", "", 1, "", strings.Repeat("x", 40000)),
			"OPTIONS sip:x@" + *target + " SIP/2.0\r\nX-Pad: " + strings.Repeat("a", 70000),
		} {
			c := dialTCP(*src)
			go c.Write([]byte(m))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			fmt.Printf("oversize %d bytes: got %q err=%v\n", len(m), firstLine(b), err)
			c.Close()
		}
	case "noreadmany":
		noReadMany(*kconns)
	case "noread":
		noRead()
	case "udpflood":
		udpFlood()
	}
	time.Sleep(500 * time.Millisecond)
	snap("end")
}

func firstLine(b []byte) string {
	i := bytes.IndexByte(b, '\r')
	if i < 0 {
		return string(b)
	}
	return string(b[:i])
}

func udpFlood() {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(*src)})
	if err != nil {
		panic(err)
	}
	lport := pc.LocalAddr().(*net.UDPAddr).Port
	to, _ := net.ResolveUDPAddr("udp4", *target)
	var got atomic.Int64
	codes := map[string]int{}
	var mu sync.Mutex
	go func() {
		buf := make([]byte, 65536)
		for {
			k, _, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			got.Add(1)
			mu.Lock()
			fl := firstLine(buf[:k])
			codes[fl[:min(len(fl), 40)]]++
			mu.Unlock()
			// ack nothing
		}
	}()
	total := *rate * int(dur.Seconds())
	start := time.Now()
	sdp := "v=0\r\no=- 1 1 IN IP4 " + *src + "\r\ns=-\r\nc=IN IP4 " + *src + "\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	tick := time.NewTicker(10 * time.Millisecond)
	sent := 0
	for sent < total && time.Since(start) < *dur+2*time.Second {
		<-tick.C
		for target := int(time.Since(start).Seconds() * float64(*rate)); sent < target && sent < total; {
			var m string
			id := fmt.Sprintf("fl-%d-%d", start.UnixNano()%100000, sent)
			switch *kind {
			case "bye":
				m = req("BYE", "UDP", *src, lport, id, "tt", 2, "", "")
			case "ack":
				m = req("ACK", "UDP", *src, lport, id, "tt", 1, "", "")
			case "reinvite":
				m = req("INVITE", "UDP", *src, lport, id, "tt", 2, "Content-Type: application/sdp\r\n", sdp)
			case "cancel":
				m = req("CANCEL", "UDP", *src, lport, id, "", 1, "", "")
			case "options":
				m = req("OPTIONS", "UDP", *src, lport, id, "", 1, "", "")
			case "invite-noack", "invite-retrans":
				if *kind == "invite-retrans" {
					id = "retrans-same"
				}
				m = req("INVITE", "UDP", *src, lport, id, "", 1, "Content-Type: application/sdp\r\n", sdp)
			case "stray200", "stray200same":
				// looks like a B-leg of ours: 24 hex + suffix
				cid := fmt.Sprintf("%024x", sent) + bsuffix
				if *kind == "stray200same" {
					cid = fmt.Sprintf("%024x", 7) + bsuffix
				}
				m = fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.73.1:15073;branch=z9hG4bK-x%d\r\nFrom: <sip:a@127.0.73.1>;tag=wt%d\r\nTo: <sip:1001@%s>;tag=pt%d\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@%s:%d>\r\nContent-Length: 0\r\n\r\n",
					sent, sent, *src, sent, cid, *src, lport)
			case "resp":
				m = fmt.Sprintf("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.73.1:15073;branch=z9hG4bK-x%d\r\nFrom: <sip:a@127.0.73.1>;tag=wt%d\r\nTo: <sip:1001@%s>;tag=pt%d\r\nCall-ID: junk-%d\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
					sent, sent, *src, sent, sent)
			}
			pc.WriteToUDP([]byte(m), to)
			sent++
		}
	}
	tick.Stop()
	snap(fmt.Sprintf("flood done: sent %d %s in %v, got %d back", sent, *kind, time.Since(start).Round(time.Millisecond), got.Load()))
	for t := time.Duration(0); t < *tail; t += 5 * time.Second {
		time.Sleep(5 * time.Second)
		snap(fmt.Sprintf("tail t+%v got=%d", time.Since(start).Round(time.Second), got.Load()))
	}
	mu.Lock()
	fmt.Println("responses by first line:", codes)
	mu.Unlock()
}

// noread: pipeline n OPTIONS on one connection with a tiny receive buffer, never read; watch.
func noRead() {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*src)}, Timeout: 3 * time.Second,
		Control: nil}
	c, err := d.Dial("tcp4", *target)
	if err != nil {
		panic(err)
	}
	if *useTLS {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			panic(err)
		}
		defer c.Close()
		c = tc
	}
	if *smallbuf {
		c.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn).SetReadBuffer(4096)
	}
	var all bytes.Buffer
	for i := 0; i < *n; i++ {
		m := req("OPTIONS", "TCP", *src, 5060, fmt.Sprintf("noread-%d", i), "", 1, "", "")
		if *bad {
			m = strings.Replace(m, "Max-Forwards: 70\r\n", "", 1)
		}
		all.WriteString(m)
	}
	go func() {
		c.SetWriteDeadline(time.Now().Add(*hold))
		k, err := c.Write(all.Bytes())
		fmt.Printf("wrote %d of %d bytes: %v\n", k, all.Len(), err)
	}()
	start := time.Now()
	for time.Since(start) < *hold {
		time.Sleep(5 * time.Second)
		snap(fmt.Sprintf("noread t+%v", time.Since(start).Round(time.Second)))
	}
	c.Close()
	time.Sleep(2 * time.Second)
	snap("after close")
}

// noreadMany: k connections, each pipelining n OPTIONS, none reading.
func noReadMany(k int) {
	var conns []net.Conn
	for j := 0; j < k; j++ {
		c := dialTCP(*src)
		if c == nil {
			break
		}
		conns = append(conns, c)
		var all bytes.Buffer
		for i := 0; i < *n; i++ {
			all.WriteString(req("OPTIONS", "TCP", *src, 5060, fmt.Sprintf("nrm-%d-%d", j, i), "", 1, "", ""))
		}
		go func() {
			c.SetWriteDeadline(time.Now().Add(*hold))
			c.Write(all.Bytes())
		}()
		if *drain {
			go io.Copy(io.Discard, c)
		}
	}
	start := time.Now()
	peak := 0
	for time.Since(start) < *hold {
		time.Sleep(time.Second)
		snap(fmt.Sprintf("noreadmany(%d) t+%v", len(conns), time.Since(start).Round(time.Second)))
		_ = peak
	}
	for _, c := range conns {
		c.Close()
	}
	time.Sleep(2 * time.Second)
}

// validate keeps every run bounded and on loopback.
func validate() error {
	for _, a := range []string{*target, *src + ":0"} {
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%s: only loopback addresses", a)
		}
	}
	switch {
	case *n < 1 || *n > 100000:
		return fmt.Errorf("-n must be 1-100000")
	case *rate < 1 || *rate > 20000:
		return fmt.Errorf("-rate must be 1-20000")
	case *kconns < 1 || *kconns > 1000:
		return fmt.Errorf("-k must be 1-1000")
	case *dur <= 0 || *dur > 5*time.Minute, *hold <= 0 || *hold > 5*time.Minute, *tail < 0 || *tail > 5*time.Minute:
		return fmt.Errorf("-d, -hold and -tail must be at most 5m")
	case *every < time.Millisecond:
		return fmt.Errorf("-every must be at least 1ms")
	case *pad == "":
		return fmt.Errorf("-pad must not be empty")
	}
	return nil
}
