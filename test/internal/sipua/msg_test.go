package sipua

import "testing"

func TestParseCompactAndFolded(t *testing.T) {
	raw := "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport=5070;received=127.0.0.9\r\n" +
		"f: <sip:a@x>;tag=1\r\nt: <sip:b@y>;tag=2\r\ni: cid\r\nCSeq: 7 INVITE\r\n" +
		"Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRecord-Route: <sip:p3;lr>\r\n" +
		"X-Long: one\r\n two\r\nl: 3\r\n\r\nabcdef"
	m, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != 200 || m.Get("Call-ID") != "cid" || m.FromTag() != "1" || m.ToTag() != "2" || m.Branch() != "z9hG4bKabc" {
		t.Errorf("parsed %+v", m)
	}
	if n, meth := m.CSeq(); n != 7 || meth != "INVITE" {
		t.Errorf("cseq %d %s", n, meth)
	}
	if rr := m.GetAll("Record-Route"); len(rr) != 3 || rr[1] != "<sip:p2;lr>" {
		t.Errorf("record-route %q", rr)
	}
	if m.Get("X-Long") != "one two" || string(m.Body) != "abc" {
		t.Errorf("folded %q body %q", m.Get("X-Long"), m.Body)
	}
	if a := responseAddr(&Msg{Headers: []Header{{"Via", m.Get("Via")}}}); a.String() != "127.0.0.9:5070" {
		t.Errorf("response address %v", a)
	}
	if a, err := URIAddr("<sip:+1555@127.0.0.3:5071;transport=udp>"); err != nil || a.String() != "127.0.0.3:5071" {
		t.Errorf("URIAddr %v %v", a, err)
	}
	if u := URIUser("\"x\" <sip:+1555@h>;tag=1"); u != "+1555" {
		t.Errorf("user %q", u)
	}
}
