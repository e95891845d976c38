package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/prompt"
	"github.com/wagate/wagate/recording"
	"github.com/wagate/wagate/sip"
)

// TestDocsListEveryMetric: docs/metrics.md, the page operators build
// dashboards and alerts from, names every metric /metrics serves (with
// every source present), and serves nothing it names that does not exist.
func TestDocsListEveryMetric(t *testing.T) {
	m := New(Sources{
		SIP: func() sip.Status {
			return sip.Status{Certificates: []sip.ListenerCert{{Address: "0.0.0.0:5061", NotAfter: time.Unix(2e9, 0)}}}
		},
		Calls:     func() b2bua.Status { return b2bua.Status{Overload: map[string]uint64{"ports": 0}} },
		Media:     func() media.Stats { return media.Stats{} },
		Recording: func() recording.Stats { return recording.Stats{} },
		Events:    func() events.Stats { return events.Stats{Subscribers: []events.SubscriberStats{{Name: "crm"}}} },
		SIPMessages: func() []sip.MessageCount {
			return []sip.MessageCount{{Direction: "in", Method: "INVITE"}, {Direction: "in", Class: "2xx"}}
		},
		Permissions: func() permissions.Stats { return permissions.Stats{} },
		Agents:      func() permissions.AgentBoardStats { return permissions.AgentBoardStats{} },
		Endpoints:   func() []sip.EndpointHealth { return []sip.EndpointHealth{{Endpoint: "pbx"}} },
		MetaWebhook: func() MetaWebhookStats { return MetaWebhookStats{} },
		Prompts:     func() prompt.Stats { return prompt.Stats{} },
		Reloads:     func() ReloadStats { return ReloadStats{} },

		WebhookUnknownNumber: func() uint64 { return 0 },
	})
	m.CallRefused(events.CDR{Direction: events.UIC, BusinessNumber: "+15550100001", SIPCode: 404})
	served := map[string]bool{}
	for name := range scrape(t, m) {
		if strings.HasPrefix(name, "wagate_") {
			served[name] = true
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, name := range regexp.MustCompile(`wagate_[a-z_]*[a-z]`).FindAllString(string(doc), -1) {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base := strings.TrimSuffix(name, suffix); base != name && served[base] {
				name = base
			}
		}
		documented[name] = true
	}
	var missing, stale []string
	for name := range served {
		if !documented[name] {
			missing = append(missing, name)
		}
	}
	for name := range documented {
		if !served[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("docs/metrics.md does not list %v", missing)
	}
	if len(stale) > 0 {
		t.Errorf("docs/metrics.md lists %v, which /metrics does not serve", stale)
	}
}
