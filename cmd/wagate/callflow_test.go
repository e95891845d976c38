package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wagate/wagate/prompt"
)

// A queue route's own music URL is the operator's: it plays from a server
// on loopback without prompts.fetch_allow, while any other URL a flow
// would ask for there is still refused.
func TestOperatorMusicIsTrusted(t *testing.T) {
	wav := prompt.EncodeWAV(prompt.Tone(8000, 523, 0.3, 200*time.Millisecond))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(wav) }))
	defer srv.Close()
	lib, err := prompt.New(prompt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	m := operatorMusic{Library: lib, url: srv.URL + "/hold.wav"}
	if a, err := m.File(context.Background(), srv.URL+"/hold.wav", prompt.Rate8k); err != nil || len(a.Samples) == 0 {
		t.Fatalf("the route's music: %d samples, error %v", len(a.Samples), err)
	}
	if _, err := m.File(context.Background(), srv.URL+"/other.wav", prompt.Rate8k); !errors.Is(err, prompt.ErrDenied) {
		t.Fatalf("another URL on loopback: error %v, want it denied", err)
	}
}
