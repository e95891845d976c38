package callflow

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// TestServiceConnectionsKept: 16 calls ask the service at once, round
// after round, as a busy contact centre's flows do. The connections are
// kept and used again: each round after the first opens none (or next to
// none). With Go's default of two idle connections per host, every
// round opened fourteen new ones, a TCP (and on https a TLS) handshake in
// the caller's silence, and left the service as many in TIME_WAIT.
func TestServiceConnectionsKept(t *testing.T) {
	const concurrent, rounds = 16, 5
	svc := &service{t: t, secret: []byte(testSecret), script: func(Request, int) (int, string) { return 200, `{"name":"x","actions":[]}` }}
	svc.Server = httptest.NewUnstartedServer(http.HandlerFunc(svc.serve))
	var opened atomic.Int32
	svc.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	svc.Start()
	t.Cleanup(svc.Close)
	e := newEngine(t, svc, nil)
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range concurrent {
			wg.Go(func() {
				if _, err := e.post(context.Background(), "start", "k", e.url.String(), []byte(`{}`), "application/json"); err != nil {
					t.Errorf("round %d request %d: %v", r, i, err)
				}
			})
		}
		wg.Wait()
	}
	t.Logf("%d connections opened for %d rounds of %d requests at once", opened.Load(), rounds, concurrent)
	if n := opened.Load(); n > concurrent+concurrent/4 {
		t.Errorf("%d connections opened for %d rounds of %d requests at once; want about %d (kept and used again)", n, rounds, concurrent, concurrent)
	}
}
