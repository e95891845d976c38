package b2bua

import (
	"net/netip"
	"testing"

	"github.com/wagate/wagate/configs"
)

// A call wagate answers itself (a call flow) has no B endpoint until a
// connect answers: it is admitted whatever the pbx's cap, counts against
// no endpoint meanwhile, and against the one that answers from then on.
func TestRegistryFlowCallCountsOnceConnected(t *testing.T) {
	r := newRegistry()
	newCall := func(id, bEndpoint string) *call {
		return &call{id: id, aEndpoint: "meta", bEndpoint: bEndpoint, aSource: "127.0.0.2:5060",
			a: &leg{callID: id + "-a"}, b: &leg{callID: id + "-b"}}
	}
	busy := newCall("plain", "pbx")
	if r.admit(busy, 0, 0, 1) != admitOK {
		t.Fatal("the first plain call to pbx was refused")
	}
	if r.admit(newCall("plain2", "pbx"), 0, 0, 1) != admitFull {
		t.Fatal("a second plain call to pbx passed its max_calls of 1")
	}
	flow := newCall("flow", "")
	if r.admit(flow, 0, 0, 0) != admitOK {
		t.Fatal("a call-flow call was refused")
	}
	if _, ok := r.perEP[""]; ok || r.perEP["pbx"] != 1 || r.perEP["meta"] != 2 {
		t.Fatalf("counts %v, want pbx 1 (the plain call), meta 2, no empty endpoint", r.perEP)
	}
	if r.hasRoom("pbx", 1) {
		t.Fatal("pbx at its max_calls of 1 has room")
	}
	r.remove(busy)
	r.rebindB(flow, "flow-b2", "pbx", func() { flow.bEndpoint = "pbx" })
	if r.perEP["pbx"] != 1 {
		t.Fatalf("counts %v, want the connected flow call on pbx", r.perEP)
	}
	r.remove(flow)
	if len(r.perEP) != 0 {
		t.Fatalf("counts %v after both calls ended", r.perEP)
	}
}

// A transfer target whose 2xx is taken as the caller hangs up: the call
// left the registry already, and its new leg must not be added back (it
// would keep the ended call, its media and its legs in memory for good,
// and findable by the target's in-dialog requests).
func TestRegistryAddLegAfterRemove(t *testing.T) {
	r := newRegistry()
	c := &call{id: "x", aEndpoint: "meta", bEndpoint: "pbx", aSource: "127.0.0.2:5060",
		a: &leg{callID: "x-a"}, b: &leg{callID: "x-b"}}
	if r.admit(c, 0, 0, 0) != admitOK {
		t.Fatal("call refused")
	}
	live := &leg{callID: "x-new"}
	if !r.addLeg(c, live) {
		t.Fatal("a new leg of a live call was refused")
	}
	if ref, ok := r.lookup("x-new"); !ok || ref.leg != live {
		t.Fatal("the new leg of a live call is not findable")
	}
	r.remove(c)
	late := &leg{callID: "x-late"}
	if r.addLeg(c, late) {
		t.Error("a new leg of an ended call was added")
	}
	if _, ok := r.lookup("x-late"); ok {
		t.Error("the ended call is findable by the late leg's Call-ID")
	}
	if len(r.byCallID) != 0 || len(r.extra) != 0 || len(r.counted) != 0 {
		t.Errorf("registry after the call ended: %d Call-IDs, %d extra, %d counted; want none", len(r.byCallID), len(r.extra), len(r.counted))
	}
}

// The endpoints live calls have legs with (as the configuration of their
// time had them) answer for their sources while a call uses them, and
// are forgotten with the last such call: a moved PBX's old address is a
// stranger again once its calls have ended.
func TestRegistryDialogPeers(t *testing.T) {
	r := newRegistry()
	meta := &configs.Endpoint{Name: "meta", SourceCIDRs: []string{"127.0.0.2"}}
	pbx := &configs.Endpoint{Name: "pbx", SourceCIDRs: []string{"127.0.0.0/30"}}
	newCall := func(id string) *call {
		return &call{id: id, aEndpoint: "meta", bEndpoint: "pbx", aSource: "127.0.0.2:5060",
			a: &leg{callID: id + "-a", ep: meta}, b: &leg{callID: id + "-b"}}
	}
	pbxIP := netip.MustParseAddr("127.0.0.3")
	c1, c2 := newCall("c1"), newCall("c2")
	r.admit(c1, 0, 0, 0)
	r.admit(c2, 0, 0, 0)
	if ep := r.peerEndpoint(netip.MustParseAddr("127.0.0.2")); ep != meta {
		t.Fatalf("A-leg source: %v, want meta", ep)
	}
	if ep := r.peerEndpoint(pbxIP); ep != nil {
		t.Fatalf("pbx answers before any B-leg INVITE: %v", ep)
	}
	r.usePeer(c1, pbx)
	r.usePeer(c1, pbx) // a second attempt toward it
	r.usePeer(c2, pbx)
	r.remove(c1)
	if ep := r.peerEndpoint(pbxIP); ep != pbx {
		t.Fatalf("pbx with c2 up: %v", ep)
	}
	r.remove(c2)
	r.usePeer(c2, pbx) // an attempt of a call already gone
	if ep := r.peerEndpoint(pbxIP); ep != nil || len(r.peers) != 0 || len(r.peersOf) != 0 {
		t.Fatalf("after the calls ended: %v, peers %v, peersOf %v", ep, r.peers, r.peersOf)
	}
}
