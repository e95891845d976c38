package callflow

import (
	"errors"
	"testing"
)

// FuzzParseFlow: any answer is a flow whose every action passed its checks,
// or an ErrBadFlow error; never a panic.
func FuzzParseFlow(f *testing.F) {
	for _, s := range []string{
		`{"clientActionId":"x","callflow":[{"action":"say","params":{"text":"hi","repetition":2,"speed":1.5}}]}`,
		`{"callflow":[{"action":"playFile","params":{"fileUrl":"https://a.example/x.mp3"}},{"action":"hangup"}]}`,
		`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"p","minDigits":2,"maxDigits":4,"completeOnHash":true,"noOfTries":3}}]}`,
		`{"callflow":[{"action":"makeCall","params":{"destination":"1001","callRecording":true}},{"action":"record","params":{"beep":false}}]}`,
		`{"callflow":[{"action":"connect","params":{"destination":"sales","destinationType":"huntList"}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, err := ParseFlow(data)
		if err != nil {
			if !errors.Is(err, ErrBadFlow) {
				t.Fatalf("error %v does not wrap ErrBadFlow", err)
			}
			return
		}
		if len(fl.Actions) == 0 || len(fl.Actions) > MaxActions {
			t.Fatalf("%d actions", len(fl.Actions))
		}
		for i, a := range fl.Actions {
			switch a := a.(type) {
			case *Say:
				if a.Repetition < 1 || a.Repetition > 3 || a.Speed < 0.5 || a.Speed > 2 || a.Text == "" {
					t.Fatalf("action %d: %+v", i, a)
				}
			case *SayAndCapture:
				if a.MinDigits < 1 || a.MaxDigits < a.MinDigits || a.MaxDigits > 32 || a.NoOfTries < 1 || i != len(fl.Actions)-1 {
					t.Fatalf("action %d: %+v", i, a)
				}
			case *Record:
				_ = a.options() // defaults filled: must not dereference nil
			}
		}
	})
}
