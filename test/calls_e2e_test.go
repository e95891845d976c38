package test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// The live calls API (docs/api.md): GET /v1/calls, GET and DELETE
// /v1/calls/{id}, through the real binary.

type liveMediaDoc struct {
	Packets   uint64  `json:"packets"`
	Bytes     uint64  `json:"bytes"`
	Forwarded uint64  `json:"forwarded"`
	Lost      uint64  `json:"lost"`
	JitterMS  float64 `json:"jitter_ms"`
}

type liveLegDoc struct {
	Endpoint    string       `json:"endpoint"`
	SIPCallID   string       `json:"sip_call_id"`
	Codec       string       `json:"codec"`
	Encryption  string       `json:"encryption"`
	RemoteMedia string       `json:"remote_media"`
	Received    liveMediaDoc `json:"received"`
}

type liveCallDoc struct {
	CallID     string     `json:"call_id"`
	Direction  string     `json:"direction"`
	State      string     `json:"state"`
	User       string     `json:"user"`
	Business   string     `json:"business_number"`
	CreatedAt  time.Time  `json:"created_at"`
	AnsweredAt time.Time  `json:"answered_at"`
	DurationMS int64      `json:"duration_ms"`
	TalkMS     int64      `json:"talk_ms"`
	A          liveLegDoc `json:"a"`
	B          liveLegDoc `json:"b"`
	Ringing    []struct {
		Leg       string `json:"leg"`
		Endpoint  string `json:"endpoint"`
		User      string `json:"user"`
		SIPCallID string `json:"sip_call_id"`
	} `json:"ringing"`
}

// callsAPI sends one request to wagate's API with the test token and
// returns the status and body.
func callsAPI(t *testing.T, e *env, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.apiBase()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res.StatusCode, b
}

// waitLiveCall polls GET /v1/calls until it lists exactly one call that
// satisfies ok, and returns it.
func waitLiveCall(t *testing.T, e *env, what string, ok func(liveCallDoc) bool) liveCallDoc {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last []byte
	for time.Now().Before(deadline) {
		code, body := callsAPI(t, e, "GET", "/v1/calls", "")
		var doc struct {
			Calls []liveCallDoc `json:"calls"`
			Count int           `json:"count"`
		}
		if code != 200 || json.Unmarshal(body, &doc) != nil || doc.Count != len(doc.Calls) {
			t.Fatalf("GET /v1/calls: %d %s", code, body)
		}
		if len(doc.Calls) == 1 && ok(doc.Calls[0]) {
			return doc.Calls[0]
		}
		last = body
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET /v1/calls never showed %s; last: %s", what, last)
	return liveCallDoc{}
}

// sdpAddr is the media address an SDP body signals.
func sdpAddr(t *testing.T, body []byte) string {
	t.Helper()
	s, err := rtppeer.ParseSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(s.IP, strconv.Itoa(s.Port))
}

// TestCallsAPIHangupAnswered: a UIC between the Go Meta peer (Opus over
// SDES-SRTP) and the Go PBX (PCMU) with tones both ways is listed with
// both legs, their codecs, media addresses and moving packet counts;
// DELETE hangs it up: both peers get a BYE from wagate, and the CDR says
// the API ended it.
func TestCallsAPIHangupAnswered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, MetaEncryption: "sdes", Extra: "node_id: e2e-node\n"})
	meta, pbx := newMetaPBX(t, e)
	c := placeUIC(t, w, meta, pbx)
	c.meta.Media.SetSource(metaTone())
	c.pbx.Media.SetSource(pbxTone())

	first := waitLiveCall(t, e, "the call confirmed with media both ways", func(lc liveCallDoc) bool {
		return lc.State == "confirmed" && lc.A.Received.Packets > 0 && lc.B.Received.Packets > 0
	})
	if first.Direction != "UIC" || first.User != waUser || first.Business != businessNumber || len(first.CallID) != 24 {
		t.Errorf("call %+v", first)
	}
	wantA := liveLegDoc{Endpoint: "meta", SIPCallID: c.meta.Dialog.CallID, Codec: "opus", Encryption: "sdes", RemoteMedia: sdpAddr(t, c.meta.Local)}
	wantB := liveLegDoc{Endpoint: "pbx", SIPCallID: c.pbx.Dialog.CallID, Codec: "PCMU", Encryption: "none", RemoteMedia: sdpAddr(t, c.pbx.Local)}
	for _, l := range []struct {
		name      string
		got, want liveLegDoc
	}{{"a", first.A, wantA}, {"b", first.B, wantB}} {
		got := l.got
		got.Received = liveMediaDoc{}
		if got != l.want {
			t.Errorf("leg %s: %+v, want %+v", l.name, got, l.want)
		}
	}

	// 700 ms and 35 packets sent by each side since first, whichever
	// comes later (a loaded machine stalls the senders: wall time says
	// nothing of what went out), and 100 ms for them to arrive.
	sentA, sentB := c.meta.Media.Stats().Sent, c.pbx.Media.Stats().Sent
	time.Sleep(700 * time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); (c.meta.Media.Stats().Sent < sentA+35 || c.pbx.Media.Stats().Sent < sentB+35) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	code, body := callsAPI(t, e, "GET", "/v1/calls/"+first.CallID, "")
	var later liveCallDoc
	if code != 200 || json.Unmarshal(body, &later) != nil {
		t.Fatalf("GET /v1/calls/%s: %d %s", first.CallID, code, body)
	}
	// 20 ms packets: 700 ms later each side has sent ~35 more.
	if later.A.Received.Packets < first.A.Received.Packets+15 || later.B.Received.Packets < first.B.Received.Packets+15 ||
		later.A.Received.Bytes <= first.A.Received.Bytes || later.B.Received.Forwarded <= first.B.Received.Forwarded {
		t.Errorf("media not moving: a %+v → %+v, b %+v → %+v", first.A.Received, later.A.Received, first.B.Received, later.B.Received)
	}
	if later.A.Received.Lost != 0 || later.B.Received.Lost != 0 {
		t.Errorf("loss over loopback: a %d b %d", later.A.Received.Lost, later.B.Received.Lost)
	}
	if later.TalkMS < 700 || later.DurationMS < later.TalkMS || later.AnsweredAt.Before(later.CreatedAt) {
		t.Errorf("durations: duration_ms %d talk_ms %d, created %v answered %v", later.DurationMS, later.TalkMS, later.CreatedAt, later.AnsweredAt)
	}

	code, body = callsAPI(t, e, "DELETE", "/v1/calls/"+first.CallID, `{"reason":"e2e test"}`)
	var hung struct {
		CallID   string `json:"call_id"`
		HangupBy string `json:"hangup_by"`
		State    string `json:"state"`
		Sent     string `json:"sent"`
	}
	if code != 202 || json.Unmarshal(body, &hung) != nil || hung.CallID != first.CallID || hung.HangupBy != "api" || hung.Sent != "bye" || hung.State != "confirmed" {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	waitBye(t, c.meta, "the Meta peer")
	waitBye(t, c.pbx, "the PBX")
	for who, d := range map[string]*metapeer.Call{"meta": c.meta, "pbx": c.pbx} {
		if d.Dialog.RemoteBye() == nil {
			t.Errorf("%s: the call ended without a BYE from wagate", who)
		}
	}
	w.waitIdle()

	code, body = callsAPI(t, e, "GET", "/v1/calls/"+first.CallID, "")
	if code != 404 || !strings.Contains(string(body), first.CallID) {
		t.Errorf("GET after the hangup: %d %s", code, body)
	}
	if code, body = callsAPI(t, e, "DELETE", "/v1/calls/"+first.CallID, ""); code != 404 {
		t.Errorf("second DELETE: %d %s", code, body)
	}

	cdr := cdrOfA(t, waitCDRs(t, e, 1), c.meta.Dialog.CallID)
	checkCDR(t, "api hangup", cdr, cdrWant{direction: "UIC", outcome: "answered", code: 200, hangupBy: "api", cause: "api hangup: e2e test",
		routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx", answered: true})
	if cdr.CallID != first.CallID || cdr.B.SIPCallID != c.pbx.Dialog.CallID {
		t.Errorf("CDR call_id %s b.sip_call_id %s, want %s %s", cdr.CallID, cdr.B.SIPCallID, first.CallID, c.pbx.Dialog.CallID)
	}
}

// TestCallsAPIHangupRinging: a UIC whose agent rings (SIPp) is hung up
// through the API before the answer: the caller gets 487, the PBX a
// CANCEL (both scenarios fail otherwise), and the CDR is a cancelled call
// ended by the API.
func TestCallsAPIHangupRinging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Extra: "node_id: e2e-node\n"})
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_ring.xml", Peer: e.PBX, Calls: 1})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, waUser, "487")})

	lc := waitLiveCall(t, e, "the call ringing", func(lc liveCallDoc) bool { return lc.State == "ringing" })
	if lc.A.Codec != "" || lc.B.Codec != "" || lc.TalkMS != 0 || !lc.AnsweredAt.IsZero() {
		t.Errorf("ringing call %+v: no codec is agreed before an answer", lc)
	}
	code, body := callsAPI(t, e, "DELETE", "/v1/calls/"+lc.CallID+"?reason=wrong+queue", "")
	if code != 202 || !strings.Contains(string(body), `"sent":"cancel"`) {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	meta.requireOK()
	pbx.requireOK()
	w.waitIdle()

	cdr := cdrOfA(t, waitCDRs(t, e, 1), sippCallID(t, meta))
	checkCDR(t, "api hangup while ringing", cdr, cdrWant{direction: "UIC", outcome: "cancelled", code: 487, hangupBy: "api",
		cause: "api hangup: wrong queue", routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx", ringing: true})
}

// TestCallsAPIParallelHunt: while a parallel hunt rings, GET /v1/calls
// lists every target's INVITE with its own Call-ID; once one answered,
// b is that target and nothing rings.
func TestCallsAPIParallelHunt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentRings)
	// a2 answers late enough for the poll to see both ring.
	a2 := startAgent(t, "a2", p2, agentAnswers, func(a *agent) { a.delay = 2500 * time.Millisecond })
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Route: "{hunt: all}", EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra: `hunt_lists: [{name: all, strategy: parallel, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}]`})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(1500)})
	i1, i2 := a1.one("INVITE"), a2.one("INVITE")
	ringing := waitLiveCall(t, e, "both targets ringing", func(lc liveCallDoc) bool { return len(lc.Ringing) == 2 })
	got := map[string]string{}
	for _, r := range ringing.Ringing {
		if r.Leg != "b" {
			t.Errorf("ringing %+v, want leg b", r)
		}
		got[r.User+"@"+r.Endpoint] = r.SIPCallID
	}
	if got["1001@pbx"] != i1.callID || got["2001@pbx2"] != i2.callID {
		t.Errorf("ringing %v, want 1001@pbx on %s and 2001@pbx2 on %s", got, i1.callID, i2.callID)
	}
	answered := waitLiveCall(t, e, "the call answered by pbx2", func(lc liveCallDoc) bool { return lc.State == "confirmed" })
	if len(answered.Ringing) != 0 || answered.B.SIPCallID != i2.callID || answered.B.Endpoint != "pbx2" {
		t.Errorf("answered call: b %+v, ringing %+v; want pbx2's leg and nothing ringing", answered.B, answered.Ringing)
	}
	meta.requireOK()
	w.waitIdle()
}
