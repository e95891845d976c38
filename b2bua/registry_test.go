package b2bua

import "testing"

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
