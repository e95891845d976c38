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
