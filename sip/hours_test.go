package sip

import (
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

func hoursConfig(t *testing.T) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse([]byte(`
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3]}
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours:
      timezone: Europe/London
      weekly:
        - {days: [mon-fri], from: "09:00", to: "17:30"}
        - {days: [sun], from: "22:00", to: "24:00"}
      holidays: ["2025-12-25"]
`), "hours.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestInHours(t *testing.T) {
	h := hoursConfig(t).Numbers[0].Hours
	london, _ := time.LoadLocation("Europe/London")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, london)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tt := range []struct {
		when string
		want bool
	}{
		{"2025-06-02 09:00", true},  // Monday, opening minute
		{"2025-06-02 08:59", false}, // a minute before
		{"2025-06-02 17:29", true},
		{"2025-06-02 17:30", false}, // the end is not included
		{"2025-06-07 12:00", false}, // Saturday
		{"2025-06-08 22:00", true},  // Sunday evening range
		{"2025-06-08 23:59", true},
		{"2025-06-09 00:00", false}, // Monday after midnight: closed until 09:00
		{"2025-12-25 12:00", false}, // Thursday, but a holiday
		{"2025-12-24 12:00", true},
		{"2025-03-31 09:30", true}, // Monday after the switch to BST
	} {
		if got := InHours(h, at(tt.when)); got != tt.want {
			t.Errorf("%s: InHours = %v, want %v", tt.when, got, tt.want)
		}
	}
	// The zone, not the caller's clock, decides: 08:30 UTC in summer is
	// 09:30 in London.
	if !InHours(h, time.Date(2025, 6, 2, 8, 30, 0, 0, time.UTC)) {
		t.Error("08:30 UTC on a June Monday is 09:30 in London: want in hours")
	}
	if InHours(h, time.Date(2025, 1, 6, 8, 30, 0, 0, time.UTC)) {
		t.Error("08:30 UTC on a January Monday is 08:30 in London: want closed")
	}
}
