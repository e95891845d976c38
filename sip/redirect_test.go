package sip

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

func TestRedirect(t *testing.T) {
	cfg, err := configs.Parse([]byte(`
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], follow_redirects: true}
  - {name: pbx2, kind: pbx, host: pbx2.example.com, port: 5070, transport: tcp, source_cidrs: [127.0.0.5]}
  - {name: pbx3, kind: pbx, host: 127.0.0.6, source_cidrs: [127.0.0.6]}
  - {name: alaw, kind: pbx, host: 127.0.0.7, source_cidrs: [127.0.0.7], codecs: [PCMA]}
  - {name: noredir, kind: pbx, host: 127.0.0.8, source_cidrs: [127.0.0.8]}
  - {name: dialer, kind: dialer, host: 127.0.0.4, source_cidrs: [127.0.0.4]}
`), "redirect.yaml")
	if err != nil {
		t.Fatal(err)
	}
	from := NewCallee(cfg.Endpoint("pbx"), "1001", 15*time.Second)
	for _, tt := range []struct {
		name     string
		from     Callee
		contacts []string
		want     string // "user@endpoint", "" for refused
	}{
		{"to another pbx by address", from, []string{"<sip:2001@127.0.0.6>"}, "2001@pbx3"},
		{"to a pbx by name and port, transport from the config", from, []string{"<sip:2002@PBX2.example.com:5070;transport=udp>"}, "2002@pbx2"},
		{"to the same pbx", from, []string{"<sip:1002@127.0.0.3:5060>"}, "1002@pbx"},
		{"highest q wins", from, []string{"<sip:a@127.0.0.6>;q=0.1", "<sip:b@127.0.0.3>;q=0.9"}, "b@pbx"},
		{"a stranger's host is never dialled", from, []string{"<sip:+441234567890@198.51.100.7>"}, ""},
		{"a configured host on another port is not the endpoint", from, []string{"<sip:2001@127.0.0.6:5080>"}, ""},
		{"skips a stranger for the next contact", from, []string{"<sip:x@203.0.113.1>", "<sip:2001@127.0.0.6>"}, "2001@pbx3"},
		{"not to a dialer", from, []string{"<sip:x@127.0.0.4>"}, ""},
		{"not to Meta", from, []string{"<sip:+447700900123@127.0.0.2>"}, ""},
		{"not to other media settings", from, []string{"<sip:3001@127.0.0.7>"}, ""},
		{"no user", from, []string{"<sip:127.0.0.6>"}, ""},
		{"tel URI", from, []string{"<tel:+441234567890>"}, ""},
		{"endpoint without follow_redirects", NewCallee(cfg.Endpoint("noredir"), "1", time.Second), []string{"<sip:2001@127.0.0.6>"}, ""},
		{"no contact", from, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := sip.NewResponse(302, "Moved Temporarily")
			for _, c := range tt.contacts {
				msg, err := sip.ParseMessage([]byte("SIP/2.0 302 Moved\r\nContact: " + c + "\r\nContent-Length: 0\r\n\r\n"))
				if err != nil {
					t.Fatal(err)
				}
				res.AppendHeader(msg.(*sip.Response).Contact())
			}
			got, why := Redirect(cfg, tt.from, res)
			if tt.want == "" {
				if why == "" {
					t.Fatalf("followed to %s, want refused", got.Name())
				}
				return
			}
			if why != "" {
				t.Fatalf("refused (%s), want %s", why, tt.want)
			}
			if got.Name() != tt.want || got.RingTimeout != tt.from.RingTimeout {
				t.Errorf("followed to %s ringing %v, want %s ringing %v", got.Name(), got.RingTimeout, tt.want, tt.from.RingTimeout)
			}
			if got.EP.Name == "pbx2" && (got.URI.String() != "sip:2002@pbx2.example.com:5070;transport=tcp") {
				t.Errorf("URI %s: want the endpoint's host, port and transport", got.URI.String())
			}
		})
	}
}
