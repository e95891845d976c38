package callflow

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseFlowDefaults(t *testing.T) {
	f, err := ParseFlow([]byte(`{"clientActionId":"x","callflow":[
		{"action":"say","params":{"text":"hi"}},
		{"action":"playFile","params":{"fileUrl":"https://cdn.example.com/a.mp3"}},
		{"action":"connect","params":{"destination":"+16505551234","destinationType":"whatsapp"}},
		{"action":"record","params":{}},
		{"action":"hangup"},
		{"action":"sayAndCapture","params":{"promptMessage":"p"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	say := f.Actions[0].(*Say)
	if say.Repetition != 1 || say.Speed != 1 {
		t.Fatalf("say defaults %+v", say)
	}
	if pf := f.Actions[1].(*PlayFile); pf.Repetition != 1 {
		t.Fatalf("playFile defaults %+v", pf)
	}
	if c := f.Actions[2].(*Connect); c.Target() != (Target{Kind: TargetWhatsApp, Destination: "+16505551234", Timeout: 30 * time.Second}) || c.Name() != "connect" {
		t.Fatalf("connect %+v", c.Target())
	}
	if r := f.Actions[3].(*Record); r.options() != (RecordOptions{MaxDuration: time.Minute, SilenceTimeout: 5 * time.Second, FinishOnKey: '#'}) || !*r.Beep {
		t.Fatalf("record %+v", r.options())
	}
	bs, err := ParseFlow([]byte(`{"callflow":[{"action":"connect","params":{"destination":"US.13491208655302741918","destinationType":"whatsapp"}}]}`))
	if err != nil || bs.Actions[0].(*Connect).Target().Destination != "US.13491208655302741918" {
		t.Fatalf("a connect to a business-scoped user id: %v", err)
	}
	c := f.Actions[5].(*SayAndCapture)
	if c.MinDigits != 1 || c.MaxDigits != 1 || c.DigitTimeout != 5000 || c.OverallTimeout != 15000 || c.NoOfTries != 1 || c.Repetition != 1 {
		t.Fatalf("sayAndCapture defaults %+v", c)
	}
}

// An answer that starts with a UTF-8 byte order mark (a PHP file saved
// with one) is the flow after it; a mark anywhere else is still not JSON.
func TestParseFlowSkipsByteOrderMark(t *testing.T) {
	f, err := ParseFlow([]byte("\xef\xbb\xbf" + `{"clientActionId":"bom","callflow":[{"action":"hangup"}]}`))
	if err != nil || f.ClientActionID != "bom" || len(f.Actions) != 1 {
		t.Fatalf("flow %+v, error %v; want the flow after the mark", f, err)
	}
	if _, err := ParseFlow([]byte(`{"callflow":` + "\xef\xbb\xbf" + `[{"action":"hangup"}]}`)); !errors.Is(err, ErrBadFlow) {
		t.Fatalf("a mark inside the JSON: error %v, want ErrBadFlow", err)
	}
}

func TestParseFlowRefuses(t *testing.T) {
	cases := map[string]struct{ doc, want string }{
		"not json":          {`hello`, "not JSON"},
		"array":             {`[1]`, "must be a JSON object"},
		"trailing":          {`{"callflow":[{"action":"hangup"}]} {}`, "data after the JSON value"},
		"no callflow":       {`{"clientActionId":"x"}`, `no "callflow" list`},
		"empty callflow":    {`{"callflow":[]}`, "the list is empty"},
		"unknown top key":   {`{"callflow":[{"action":"hangup"}],"next":"x"}`, `unknown key "next"`},
		"callflow object":   {`{"callflow":{"action":"hangup"}}`, "callflow: want a list"},
		"no action":         {`{"callflow":[{"params":{}}]}`, `callflow[0]: no "action"`},
		"unknown action":    {`{"callflow":[{"action":"dance","params":{}}]}`, `callflow[0]: unknown action "dance"`},
		"queue no list":     {`{"callflow":[{"action":"queue","params":{}}]}`, `callflow[0] (queue): params.destination: required`},
		"queue priority":    {`{"callflow":[{"action":"queue","params":{"destination":"sales","priority":10}}]}`, `params.priority: 10 is outside 0–9`},
		"queue announce":    {`{"callflow":[{"action":"queue","params":{"destination":"sales","announceEvery":1000}}]}`, `params.announceEvery: 1000 is outside 5000–600000`},
		"action not string": {`{"callflow":[{"action":5}]}`, "callflow[0]: action: want a string, got a number"},
		"no params":         {`{"callflow":[{"action":"say"}]}`, `callflow[0] (say): no "params"`},
		"unknown param":     {`{"callflow":[{"action":"say","params":{"text":"a","volume":3}}]}`, `callflow[0] (say): params: unknown key "volume"`},
		"text type":         {`{"callflow":[{"action":"say","params":{"text":5}}]}`, "params.text: want a string, got a number"},
		"no text":           {`{"callflow":[{"action":"say","params":{}}]}`, "params.text: required"},
		"long text":         {`{"callflow":[{"action":"say","params":{"text":"` + strings.Repeat("x", 5000) + `"}}]}`, "5000 bytes (at most 4096)"},
		"repetition 1.5":    {`{"callflow":[{"action":"say","params":{"text":"a","repetition":1.5}}]}`, "params.repetition: want a whole number, got a number 1.5"},
		"repetition 4":      {`{"callflow":[{"action":"say","params":{"text":"a","repetition":4}}]}`, "repetition: 4 is outside 1–3"},
		"speed 0.4":         {`{"callflow":[{"action":"say","params":{"text":"a","speed":0.4}}]}`, "speed: 0.4 is outside 0.5–2"},
		"file scheme":       {`{"callflow":[{"action":"playFile","params":{"fileUrl":"ftp://x/a.wav"}}]}`, "fileUrl: \"ftp://x/a.wav\" must be an http or https URL"},
		"no file":           {`{"callflow":[{"action":"playFile","params":{}}]}`, "fileUrl: required"},
		"min digits 33":     {`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"p","minDigits":33}}]}`, "minDigits: 33 is outside 1–32"},
		"digit timeout":     {`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"p","digitTimeout":100}}]}`, "digitTimeout: 100 is outside 1000–60000"},
		"tries":             {`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"p","noOfTries":11}}]}`, "noOfTries: 11 is outside 1–10"},
		"hash type":         {`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"p","completeOnHash":"yes"}}]}`, "params.completeOnHash: want true or false, got a string"},
		"after capture":     {`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"p"}},{"action":"hangup"}]}`, "callflow[1] (hangup): nothing may follow a sayAndCapture"},
		"extension":         {`{"callflow":[{"action":"makeCall","params":{"destination":"sip:1001@pbx"}}]}`, `destination: "sip:1001@pbx" is not a valid extension`},
		"whatsapp":          {`{"callflow":[{"action":"connect","params":{"destination":"1001","destinationType":"whatsapp"}}]}`, "is not a valid whatsapp"},
		"whatsapp bsuid":    {`{"callflow":[{"action":"connect","params":{"destination":"US.12/../x","destinationType":"whatsapp"}}]}`, "is not a valid whatsapp"},
		"dest type":         {`{"callflow":[{"action":"connect","params":{"destination":"1001","destinationType":"pstn"}}]}`, `destinationType: "pstn" is not extension, huntList or whatsapp`},
		"finish key":        {`{"callflow":[{"action":"record","params":{"finishOnKey":"12"}}]}`, `finishOnKey: "12" is not one key`},
		"silence":           {`{"callflow":[{"action":"record","params":{"silenceTimeout":100}}]}`, "silenceTimeout: 100 is outside"},
		"control id":        {`{"clientActionId":"a\nb","callflow":[{"action":"hangup"}]}`, "clientActionId"},
		"too many":          {`{"callflow":[` + strings.Repeat(`{"action":"hangup"},`, 50) + `{"action":"hangup"}]}`, "51 actions (at most 50)"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseFlow([]byte(c.doc))
			if !errors.Is(err, ErrBadFlow) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want ErrBadFlow saying %q", err, c.want)
			}
		})
	}
}

func TestTemplateExpand(t *testing.T) {
	tp, err := ParseTemplate(`{"from":"{caller}","k":"{keypress}"}`)
	if err != nil {
		t.Fatal(err)
	}
	got := tp.Expand(map[string]string{VarCaller: `+1"},"admin":true,"x":"`, VarKeypress: "1#"})
	if got != `{"from":"%2B1%22%7D%2C%22admin%22%3Atrue%2C%22x%22%3A%22","k":"1%23"}` {
		t.Fatalf("expanded %s", got)
	}
	if _, err := ParseURLTemplate("https://ivr.example.com:{callId}/"); err == nil {
		t.Fatal("a value in the port was accepted")
	}
}
