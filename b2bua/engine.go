// Package b2bua is wagate's back-to-back user agent: the calls, each with
// its two legs and their dialogs, from the INVITE the SIP edge admitted to
// the last BYE — call set-up and its timers, the media bridge, the
// permission gate's tickets, recording, the call records and the journal
// of live dialogs. It never reads bytes off the wire: the sip package (the
// edge) hands it parsed messages that passed its checks, and sends what it
// asks.
package b2bua

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/recording"
	sipedge "github.com/wagate/wagate/sip"
)

// Edge is what the B2BUA needs of the SIP edge (sip.Server).
type Edge interface {
	// Config is the configuration in force.
	Config() *configs.Config
	// Client sends requests from wagate's listeners.
	Client() *sipgo.Client
	// Prepare pins a request sent over UDP to the listening socket.
	Prepare(req *sip.Request)
	// Contact is wagate's Contact for a leg on transport.
	Contact(transport string) *sip.ContactHeader
	// Respond and Reject answer a server transaction.
	Respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, mut func(*sip.Response))
	Reject(tx sip.ServerTransaction, req *sip.Request, r *sipedge.Rejection, log *slog.Logger)
	// Draining reports whether wagate takes no new calls.
	Draining() bool
	// WaitUDPServing waits until requests can leave from the UDP listener.
	WaitUDPServing(ctx context.Context)
	// Up reports whether an endpoint may be rung: false once its OPTIONS
	// probes marked it down.
	Up(endpoint string) bool
	// Now is the time routing reads business hours at.
	Now() time.Time
}

// Engine owns every call.
type Engine struct {
	edge      Edge
	log       *slog.Logger
	newBridge BridgeFactory
	reg       *registry
	// ackWait finds, by A's Call-ID, a call that ended while its A-leg
	// ACK was awaited (its BYE held until then: call.byeAOnAck); the
	// registry has forgotten it.
	ackWait sync.Map
	gate    atomic.Pointer[gateBox]
	keying  atomic.Pointer[keyingBox]
	rec     *recording.Manager
	// journal keeps the live dialogs for a restart after a crash (nil: off).
	journal *Journal
	// cdrStored says whether the events store has a call's record (nil:
	// the journal keeps no records).
	cdrStored func(ctx context.Context, callID string) (bool, error)
	// observers are told about every call (AddObserver, before Run).
	observers []CallObserver
	// over counts and explains the 503s given to new calls; cps limits
	// endpoints' call rates.
	over overload
	cps  *cpsGuard
	// ctl is hold's and transfer's (hold.go).
	ctl engineControl
	// flows gives call-flow routes their engine (SetCallFlows).
	flows CallFlows
	// hunts is what the hunt strategies remember between calls.
	hunts huntState
	// lines are the call-flow queues, per hunt list (queue.go).
	lines waitLines
	// queueRetry, when set (tests, before Run), replaces the queue's
	// poll of queueRetry: a test sets it long to see the wake on an
	// agent leaving a call do the work alone.
	queueRetry time.Duration

	// ctx ends every call's waits when the engine drains.
	ctx    context.Context
	cancel context.CancelFunc
	// wg owns the goroutines started outside request handlers (BYEs,
	// CANCELs, stray-2xx clean-up, the BYEs after a restart).
	wg *tasks
	// strays bounds the BYEs for stray 2xx responses (stray.go).
	strays strayByes
	// restartCancels are the INVITEs cancelled at start-up, whose final
	// responses are ACKed (journalinvite.go).
	restartCancels restartCancels
}

// New builds the B2BUA behind edge; newBridge allocates each call's media.
// Give it to the edge with sip.Server.SetCalls.
func New(edge Edge, newBridge BridgeFactory, log *slog.Logger) *Engine {
	log = lazyLog(log)
	e := &Engine{
		edge:      edge,
		log:       log,
		newBridge: newBridge,
		reg:       newRegistry(),
		cps:       newCPSGuard(),
		wg:        newTasks(),
	}
	e.over.log = log
	e.ctl.link = linkBridges
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e
}

// Status is a snapshot of the calls for the status endpoint and tests.
type Status struct {
	Calls        int    `json:"calls"`
	CallsStarted uint64 `json:"calls_started"`
	CallsEnded   uint64 `json:"calls_ended"`
	// Overload counts the 503s new calls got, by reason.
	Overload OverloadStats `json:"overload_refusals"`
}

// Status reports live and total calls.
func (s *Engine) Status() Status {
	return Status{Calls: s.reg.count(), CallsStarted: s.reg.started.Load(), CallsEnded: s.reg.ended.Load(), Overload: s.over.snapshot()}
}

// Busy reports whether a live call's A-leg came from src.
func (s *Engine) Busy(src string) bool { return s.reg.hasSource(src) }

// DialogPeer returns the endpoint, as a live call's leg has it, whose
// source addresses hold ip, or nil. The edge asks it of a source the
// running configuration no longer knows: a reload that removed an
// endpoint or moved its addresses leaves the calls up with it whole (its
// BYE, its responses), while it may start nothing new.
func (s *Engine) DialogPeer(ip netip.Addr) *configs.Endpoint { return s.reg.peerEndpoint(ip) }

// Started hangs up the calls a crash left (from the journal) and samples
// the CPU and the media pacer for sip.max_cpu_percent and
// sip.max_late_media_percent until ctx ends.
func (s *Engine) Started(ctx context.Context) {
	s.hangUpLeftCalls(ctx)
	s.over.sample(ctx, time.Second)
}

// SetPacerStats gives the engine the media pacer's lateness, for
// sip.max_late_media_percent. Call it before Started.
func (s *Engine) SetPacerStats(f func() media.PacerStats) { s.over.pacer = f }

// Drain waits for live calls to end until ctx is done, then hangs up the
// rest and waits for the BYEs (5 s at most: a peer that never answers
// does not hold the shutdown for 32 s).
func (s *Engine) Drain(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
wait:
	for s.reg.count() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-t.C:
		}
	}
	for _, c := range s.reg.snapshot() {
		c.terminate(nil, "shutdown")
	}
	s.cancel()
	flushed := make(chan struct{})
	go func() { s.wg.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(5 * time.Second):
		s.log.Warn("shutdown: some BYE/CANCEL transactions still open")
	}
}

// InDialog handles a request with a To tag from endpoint ep.
func (s *Engine) InDialog(req *sip.Request, tx sip.ServerTransaction, ep *configs.Endpoint) {
	switch req.Method {
	case sip.INVITE:
		s.onReinvite(req, tx)
	case sip.BYE:
		s.onBye(req, tx)
	case sip.REFER:
		s.onRefer(req, tx)
	default:
		s.onOtherInDialog(req, tx)
	}
}

// Ack takes an ACK for one of wagate's 2xx.
func (s *Engine) Ack(req *sip.Request) { s.onAck(req) }

// StrayResponse takes a response that matched no client transaction.
func (s *Engine) StrayResponse(res *sip.Response) { s.onStrayResponse(res) }

// sendBye hangs up one leg without blocking the caller; the engine owns
// the goroutine and waits for it when it drains.
func (s *Engine) sendBye(c *call, l *leg) { s.sendByeThen(c, l, nil) }

// sendByeThen is sendBye calling sent, when given, once the BYE is
// written (or could not be). An agent leaving a call is freed through it:
// freed before, a queue call waiting for that agent could ring its phone
// with an INVITE that overtakes the BYE, and a phone still in the call
// answers that 486 Busy Here.
func (s *Engine) sendByeThen(c *call, l *leg, sent func()) {
	req := l.newRequest(sip.BYE, nil)
	s.edge.Prepare(req)
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
		defer cancel()
		res, err := s.byeDo(ctx, req, sent)
		switch {
		case err != nil || res == nil:
			// sipgo returns no response and no error when the
			// transaction is torn down (shutdown closes the UA).
			c.log.Warn("BYE failed", "leg", l.name, "error", errString(err))
		case res.StatusCode >= 300 && res.StatusCode != 481:
			c.log.Warn("BYE refused", "leg", l.name, "code", res.StatusCode)
		}
	})
}

// byeOrFree sends l its BYE when up and calls free once it is written, or
// calls free at once when l needs none: how a leg whose agent leaves is
// hung up (sendByeThen).
func (s *Engine) byeOrFree(c *call, l *leg, up bool, free func()) {
	if up {
		s.sendByeThen(c, l, free)
		return
	}
	free()
}

// byeDo is sipgo's Client.Do calling sent between the transaction's
// first write and the wait for its final response.
func (s *Engine) byeDo(ctx context.Context, req *sip.Request, sent func()) (*sip.Response, error) {
	tx, err := s.edge.Client().TransactionRequest(ctx, req)
	if sent != nil {
		sent()
	}
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, tx.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Retransmission reports whether req is A's INVITE of a live call again,
// after its transaction stopped absorbing retransmissions
// (sip.transaction_linger): the call exists and its 2xx is being
// retransmitted until A's ACK.
func (s *Engine) Retransmission(req *sip.Request) bool { return s.isRetransmission(req) }

// Refused records an INVITE the edge refused itself once it knew its
// endpoint.
func (s *Engine) Refused(req *sip.Request, ep *configs.Endpoint, r *sipedge.Rejection) {
	s.notifyRefused(req, ep, nil, r, "")
}
