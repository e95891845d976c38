package sip

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// FuzzRedirect: whatever a callee's 3xx carries (its Contacts, their
// URIs and q values, as sipgo parses them off the wire), Redirect never
// panics and never moves the call anywhere but to a user of a configured
// pbx endpoint other than the caller's media would not suit: a peer must
// not choose where wagate dials (toll fraud). Run:
// go test -run '^$' -fuzz FuzzRedirect -parallel 1 ./sip/
func FuzzRedirect(f *testing.F) {
	cfg, err := configs.Parse([]byte(`
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], follow_redirects: true}
  - {name: pbx2, kind: pbx, host: pbx2.example.com, port: 5070, transport: tcp, source_cidrs: [127.0.0.5]}
  - {name: pbx3, kind: pbx, host: 127.0.0.6, source_cidrs: [127.0.0.6]}
  - {name: alaw, kind: pbx, host: 127.0.0.7, source_cidrs: [127.0.0.7], codecs: [PCMA]}
  - {name: dialer, kind: dialer, host: 127.0.0.4, source_cidrs: [127.0.0.4]}
`), "redirect.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []string{
		"Contact: <sip:2001@127.0.0.6>",
		"Contact: <sip:2002@PBX2.example.com:5070;transport=udp>",
		"Contact: <sip:a@127.0.0.6>;q=0.1, <sip:b@127.0.0.3>;q=0.9",
		"Contact: <sip:x@203.0.113.1>\r\nContact: <sip:2001@127.0.0.6>;q=1e400",
		"m: <sips:3001@[::ffff:127.0.0.6]>;q=NaN",
		"Contact: <sip:%00%0d@127.0.0.6>",
		"Contact: *",
		"Contact: <tel:+441234567890>",
	} {
		f.Add([]byte("SIP/2.0 302 Moved Temporarily\r\n" + c + "\r\nContent-Length: 0\r\n\r\n"))
	}
	from := NewCallee(cfg.Endpoint("pbx"), "1001", 15*time.Second)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			return
		}
		got, why := Redirect(cfg, from, res)
		if why != "" {
			return
		}
		if got.EP == nil || got.EP.Kind != configs.KindPBX || cfg.Endpoint(got.EP.Name) != got.EP {
			t.Fatalf("followed to %+v, not a configured pbx", got.EP)
		}
		if !configs.MediaCompatible(from.EP, got.EP) {
			t.Fatalf("followed to %s, whose media settings differ", got.EP.Name)
		}
		if got.User == "" || sanitizeUser(got.User) != got.User {
			t.Fatalf("followed to user %q", got.User)
		}
		if want := NewCallee(got.EP, got.User, from.RingTimeout); got.URI.String() != want.URI.String() {
			t.Fatalf("followed to %s, not the endpoint's own host, port and transport (%s)", got.URI.String(), want.URI.String())
		}
	})
}
