package test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// TestMultiNodeClickToCallKeyShared: a CRM behind a load balancer retries
// POST /v1/calls with its Idempotency-Key, and the retry reaches another
// node. That node must answer the first call's 202 again and dial nobody;
// two requests with one key sent to both nodes at once place one call;
// and a refusal on one node leaves the key free on the other.
func TestMultiNodeClickToCallKeyShared(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := &cluster{t: t, e: e, mod: func(o *wagateOpts) { o.MetaEncryption, o.MetaCodecs = "sdes", bicMetaCodecs }}
	c.redis = startRedis(t, e.ip(20), filepath.Join(e.dir, "redis"))
	n1, n2 := c.addNode(1), c.addNode(2)
	agent := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	n1.grant(t, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), 3*peerCallLimit)
	defer cancel()

	// hangUp cancels the ringing agent of call id on node nd.
	hangUp := func(nd *node, id string, in *sipua.Incoming) {
		t.Helper()
		if code, body := callsAPI(t, nd.e, "DELETE", "/v1/calls/"+id, ""); code != 202 {
			t.Fatalf("DELETE %s on %s: %d %s", id, nd.id, code, body)
		}
		select {
		case <-in.Cancelled():
		case <-time.After(replyLimit):
			t.Fatalf("the agent got no CANCEL of %s", id)
		}
		nd.w.waitIdle()
	}

	first := startC2C(t, n1.e, c2cBody(""), "crm-77")
	in, err := agent.UA.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.Ring()
	hangUp(n1, first.CallID, in)
	code, hdr, b := postC2C(t, n2.e, c2cBody(""), "crm-77")
	var again c2cDoc
	if code != 202 || json.Unmarshal(b, &again) != nil || again.CallID != first.CallID || hdr.Get("Idempotent-Replayed") != "true" || hdr.Get("X-Wagate-Node") != n1.id {
		t.Errorf("the retry on the other node: %d %v %s; want node1's 202 replayed, naming node1", code, hdr, b)
	}
	if code, _, b := postC2C(t, n2.e, c2cBody(`,"ring_timeout":5`), "crm-77"); code != 422 {
		t.Errorf("the same key with another body on the other node: %d %s, want 422", code, b)
	}

	// Both nodes at once: one call.
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i, nd := range []*node{n1, n2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, b := postC2C(t, nd.e, c2cBody(""), "crm-78")
			var doc c2cDoc
			if code != 202 || json.Unmarshal(b, &doc) != nil {
				t.Errorf("crm-78 on %s: %d %s", nd.id, code, b)
			}
			ids[i] = doc.CallID
		}()
	}
	wg.Wait()
	if ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("one key sent to both nodes at once answered calls %q and %q, want one", ids[0], ids[1])
	}
	in, err = agent.UA.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.Ring()
	owner := n1
	if code, _ := callsAPI(t, n1.e, "GET", "/v1/calls/"+ids[0], ""); code != 200 {
		owner = n2
	}
	hangUp(owner, ids[0], in)

	// A refusal dialled nobody: the key stays free on every node.
	const other = "+15550109999"
	if code, _, b := postC2C(t, n1.e, `{"business_number":"`+businessNumber+`","user":"`+other+`","agent":{"endpoint":"pbx","extension":"1001"}}`, "crm-79"); code != 403 {
		t.Fatalf("a user without permission: %d %s, want 403", code, b)
	}
	n1.grant(t, other, "temporary")
	retry := startC2C(t, n2.e, `{"business_number":"`+businessNumber+`","user":"`+other+`","agent":{"endpoint":"pbx","extension":"1001"}}`, "crm-79")
	in, err = agent.UA.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.Ring()
	hangUp(n2, retry.CallID, in)
	if n := invites(agent.UA); n != 3 {
		t.Errorf("the agent got %d INVITEs, want 3: one per key", n)
	}
}
