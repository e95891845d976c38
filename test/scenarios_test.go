package test

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestScenariosPeerToPeer runs each caller scenario straight against its
// callee scenario, SIPp to SIPp, without wagate: it keeps the scenarios
// known-good, so that a failure in the wagate tests points at wagate.
func TestScenariosPeerToPeer(t *testing.T) {
	t.Parallel()
	requireSipp(t)

	pairs := []struct {
		name           string
		caller, callee string
		callerArgs     []string
		calleeArgs     []string
		wantCallerFail bool
	}{
		{name: "bye_from_caller", caller: "uac.xml", callee: "uas.xml", callerArgs: []string{"-d", "200"}},
		{name: "early_media", caller: "uac.xml", callee: "uas_early.xml", callerArgs: []string{"-d", "200"}},
		{name: "bye_from_callee", caller: "uac_wait_bye.xml", callee: "uas_bye.xml", calleeArgs: []string{"-d", "200"}},
		{name: "cancel", caller: "uac_cancel.xml", callee: "uas_ring.xml"},
		{name: "busy", caller: "uac_expect.xml", callee: "uas_486.xml", callerArgs: []string{"-key", "expect_code", "486"}},
		{name: "busy_any", caller: "uac_expect.xml", callee: "uas_486.xml", callerArgs: []string{"-key", "expect_code", "any"}},
		{name: "busy_wrong_code", caller: "uac_expect.xml", callee: "uas_486.xml", callerArgs: []string{"-key", "expect_code", "404"}, wantCallerFail: true},
		{name: "nosdp", caller: "uac_nosdp.xml", callee: "uas_486.xml", callerArgs: []string{"-key", "expect_code", "486"}},
		{name: "options", caller: "options.xml", callee: "uas_options.xml"},
		{name: "media_answer", caller: "uac_media.xml", callee: "uas.xml", callerArgs: []string{"-d", "200", "-key", "rtp_ip", "127.0.0.1", "-key", "rtp_port", "9"}},
	}
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			e := makeEnv(t)
			args := append(callArgs(businessNumber, waUser), pc.callerArgs...)
			answerFile := filepath.Join(e.dir, "answer.txt")
			if pc.caller == "uac_media.xml" {
				args = append(args, "-key", "answer_file", answerFile)
			}
			callee := e.startSipp(sippSpec{Name: "callee", Scenario: pc.callee, Peer: e.PBX, Calls: 1, Args: pc.calleeArgs})
			caller := e.startSipp(sippSpec{Name: "caller", Scenario: pc.caller, Peer: e.Meta, Remote: e.PBX.Addr(), Calls: 1, Args: args})
			if pc.wantCallerFail {
				if err := caller.wait(); err == nil {
					t.Errorf("caller succeeded, want it to fail on the wrong final code")
				}
				caller.checked = true
				if logs := strings.Join(caller.logLines(), "\n"); !strings.Contains(logs, "final response 486") {
					t.Errorf("caller log %q does not report the code received", logs)
				}
				_ = callee.wait()
				callee.checked = true
				return
			}
			caller.requireOK()
			callee.requireOK()
			if pc.caller == "uac_media.xml" {
				got := waitAnswerFile(t, answerFile, caller)
				if got.IP.String() != e.PBX.IP || got.Port != e.PBX.MediaPort {
					t.Errorf("answer file says %v, want %s:%s", got, e.PBX.IP, strconv.Itoa(e.PBX.MediaPort))
				}
			}
		})
	}
}
