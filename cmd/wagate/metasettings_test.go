package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/api"
	"github.com/wagate/wagate/configs"
)

func metaTestConfig(numberKeying string) *configs.Config {
	return &configs.Config{
		Endpoints: []configs.Endpoint{{Name: "pbx", Kind: configs.KindPBX, MediaEncryption: "none"},
			{Name: "meta", Kind: configs.KindWhatsApp, MediaEncryption: "sdes"}},
		Numbers: []configs.Number{{Number: "+15550100001", PhoneNumberID: "1001"},
			{Number: "+15550100002", PhoneNumberID: "1002", MediaEncryption: numberKeying}},
	}
}

// TestMetaSettingsMismatchSurvivesRestart: a report of DTLS for an sdes
// number is a mismatch (a number's own media_encryption wins over the
// endpoint's), kept on disk, so a restarted wagate still knows it; a
// config that follows Meta clears it.
func TestMetaSettingsMismatchSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := metaTestConfig("dtls")
	get := func() *configs.Config { return cfg }
	log := slog.New(slog.DiscardHandler)
	m, err := newMetaSettings(dir, get, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1760000000, 0).UTC()
	for _, u := range []api.MetaSettingsUpdate{
		{PhoneNumberID: "1001", SRTPKeyExchange: "dtls", SIPStatus: "ENABLED", At: at},
		{PhoneNumberID: "1002", SRTPKeyExchange: "dtls", At: at},
		{PhoneNumberID: "1001", SIPStatus: "ENABLED", At: at.Add(time.Minute)}, // keying not restated: kept
	} {
		if err := m.apply(u); err != nil {
			t.Fatal(err)
		}
	}
	if got, bad := m.Mismatch("1001", "sdes"); got != "dtls" || !bad {
		t.Errorf("1001: %q %v, want dtls mismatch", got, bad)
	}
	if _, bad := m.Mismatch("1002", "dtls"); bad {
		t.Error("1002 configured dtls reported as a mismatch")
	}
	if st := m.stats(); st.SettingsUpdates != 3 || st.Mismatches != 2 || st.Mismatched != 1 {
		t.Errorf("stats %+v, want 3 updates, 2 mismatching updates, 1 number mismatched", st)
	}

	m2, err := newMetaSettings(dir, get, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if got, bad := m2.Mismatch("1001", "sdes"); got != "dtls" || !bad {
		t.Errorf("after a restart: %q %v", got, bad)
	}
	cfg = metaTestConfig("dtls")
	cfg.Endpoints[1].MediaEncryption = "dtls"
	if st := m2.stats(); st.Mismatched != 0 {
		t.Errorf("after the config followed Meta: %d numbers mismatched", st.Mismatched)
	}

	// A damaged file is reported and wagate starts without it.
	if err := os.WriteFile(filepath.Join(dir, metaSettingsFile), []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	m3, err := newMetaSettings(dir, get, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, bad := m3.Mismatch("1001", "sdes"); bad {
		t.Error("mismatch read from a damaged file")
	}
}

// TestMetaSettingsOlderUpdateIgnored: Meta redelivers a whole batch after a
// non-2xx, so an older keying report can arrive after a newer one; it must
// not bring back a mismatch that would refuse the number's BICs.
func TestMetaSettingsOlderUpdateIgnored(t *testing.T) {
	cfg := metaTestConfig("")
	m, err := newMetaSettings(t.TempDir(), func() *configs.Config { return cfg }, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1760000000, 0).UTC()
	for _, u := range []api.MetaSettingsUpdate{
		{PhoneNumberID: "1001", SRTPKeyExchange: "sdes", At: at},
		{PhoneNumberID: "1001", SRTPKeyExchange: "dtls", At: at.Add(-time.Hour)}, // redelivered, older
	} {
		if err := m.apply(u); err != nil {
			t.Fatal(err)
		}
	}
	if got, bad := m.Mismatch("1001", "sdes"); got != "sdes" || bad {
		t.Errorf("after an older dtls report: %q mismatch=%v, want sdes and no mismatch", got, bad)
	}
}
