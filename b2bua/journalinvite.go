package b2bua

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The journal's pending INVITEs let wagate stop, after a crash, the
// phones it was ringing. An INVITE wagate sent (an agent's or a PBX's
// extension, each target of a hunt or queue, a transfer's target, a BIC's
// leg toward Meta) rings on after wagate dies: its transaction lives in
// the callee, which has no reason to give up before its own ring time
// (minutes on some PBXs, until the user gives up on WhatsApp). Someone
// answers, and gets a call wagate no longer has. The journal keeps, while
// the INVITE has no final response, what RFC 3261 §9.1 needs to cancel it
// — Request-URI, top Via (its branch and sent-by), From with its tag, To
// without one, Call-ID, CSeq number, Route set, and where and how it was
// sent — and the next start sends those CANCELs.
//
// An "inv" line is written once the INVITE has gone out (its Via names
// the branch only then), an "inv-end" line when its transaction ends (a
// final response, a timeout, the attempt abandoned), whether before its
// call's "down" or after it: a call's end cancels its INVITEs, but a
// CANCEL takes a round trip and its callee's 487 another, and a crash in
// between (or a CANCEL lost) leaves the callee ringing with nobody to
// cancel it. So a "down" ends no INVITE: each is held until its own end,
// and the next start cancels those without one. An INVITE whose attempt
// returns because wagate stops, with no final response, is not ended at
// all: the callee may ring on (no 1xx came, so no CANCEL could go; or the
// CANCEL had no answer before the process exited), and the next start
// cancels it. One whose CANCEL was answered (2xx) before the stop, its
// 487 still to come, is kept marked so (Cancelled): the next start sends
// it no second CANCEL, and ACKs the 487 if it comes.

// journalInvite is an INVITE wagate sent, as its CANCEL needs it.
type journalInvite struct {
	Branch string `json:"branch"`
	// Call is the wagate call it rings for; Leg the leg ("a", "b").
	Call string `json:"call"`
	Leg  string `json:"leg"`
	// URI is the Request-URI; Via, From and To the INVITE's header
	// values (the top Via only), sent again byte for byte.
	URI       string   `json:"uri"`
	Via       string   `json:"via"`
	From      string   `json:"from"`
	To        string   `json:"to"`
	CallID    string   `json:"call_id"`
	CSeq      uint32   `json:"cseq"`
	Route     []string `json:"route,omitempty"`
	Transport string   `json:"transport"`
	Dest      string   `json:"dest,omitempty"`
	// Cancelled: the INVITE's CANCEL was answered 2xx (RFC 3261 §9.2:
	// the callee will end the INVITE with 487); only its final response
	// is missing. Set in memory (no line of its own: a crash just costs a
	// second CANCEL, which the callee answers and ignores) and written by
	// a rewrite, so that a graceful stop keeps it.
	Cancelled bool `json:"cancelled,omitempty"`
}

// invite records inv as pending.
func (j *Journal) invite(inv journalInvite) error {
	b := appendInviteLine(make([]byte, 0, 512), &inv)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.addInviteLocked(inv)
	return j.appendLocked(b)
}

// inviteEnded records that the INVITE of branch got its final response
// (or ended without one).
//
// The end of an INVITE whose call has ended (most often a 487 to the
// CANCEL the call's end sent) waits for the next line to go out with it,
// in the same write(2): a call cancelled while ringing then costs the
// journal no more writes than when its "down" ended its INVITEs. A crash
// before that next line loses the end, and the next start sends that
// INVITE a CANCEL it did not need, which its callee answers (481, or 200
// to a transaction still completing) and otherwise ignores. An INVITE
// whose call is still live is ended at once, as before: most INVITEs end
// so (answered, refused, a hunt's target given up on), and a needless
// CANCEL after a crash would then go to callees that had answered.
func (j *Journal) inviteEnded(branch string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	inv, ok := j.invites[branch]
	if !ok {
		return nil
	}
	j.dropInviteLocked(branch)
	if _, live := j.live[inv.Call]; !live && j.f != nil {
		j.lazyEnds = append(appendInviteEndLine(j.lazyEnds, branch), '\n')
		return nil
	}
	return j.appendLocked(appendInviteEndLine(make([]byte, 0, 64), branch))
}

// inviteCancelled marks the INVITE of branch as cancelled (its CANCEL
// answered 2xx); nothing is written until a rewrite.
func (j *Journal) inviteCancelled(branch string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if inv, ok := j.invites[branch]; ok {
		inv.Cancelled = true
		j.invites[branch] = inv
	}
}

func (j *Journal) addInviteLocked(inv journalInvite) {
	j.invites[inv.Branch] = inv
	j.invitesOf[inv.Call] = append(j.invitesOf[inv.Call], inv.Branch)
}

// dropInviteLocked forgets the INVITE of branch; false if it was not
// pending.
func (j *Journal) dropInviteLocked(branch string) bool {
	inv, ok := j.invites[branch]
	if !ok {
		return false
	}
	delete(j.invites, branch)
	bs := j.invitesOf[inv.Call]
	for i, b := range bs {
		if b == branch {
			bs = append(bs[:i], bs[i+1:]...)
			break
		}
	}
	if len(bs) == 0 {
		delete(j.invitesOf, inv.Call)
	} else {
		j.invitesOf[inv.Call] = bs
	}
	return true
}

// dropInvitesOfLocked forgets the pending INVITEs of call id: its "down"
// read back from a journal written before INVITEs ended after their call
// had "inv-end" lines (journalInvEnds), where the "down" ended them.
func (j *Journal) dropInvitesOfLocked(id string) {
	for _, b := range j.invitesOf[id] {
		delete(j.invites, b)
	}
	delete(j.invitesOf, id)
}

// leftInvites returns the INVITEs the previous run left pending and
// forgets them.
func (j *Journal) leftInvites() []journalInvite {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.prevInvites
	j.prevInvites = nil
	for _, inv := range out {
		j.dropInviteLocked(inv.Branch)
	}
	return out
}

// journalInvite records the INVITE req, just sent on leg of c, as pending
// until journalInviteEnded; it returns the branch to end it with ("" when
// there is no journal or the INVITE has no branch).
func (s *Engine) journalInvite(c *call, leg string, req *sip.Request) string {
	if s.journal == nil {
		return ""
	}
	inv, ok := pendingInvite(c.id, leg, req)
	if !ok {
		return ""
	}
	if err := s.journal.invite(inv); err != nil {
		c.log.Error("journal: INVITE not recorded; a crash now would leave its callee ringing", "leg", leg, "error", err)
	}
	return inv.Branch
}

// journalInviteCancelled records that the CANCEL of the INVITE inv was
// answered 2xx.
func (s *Engine) journalInviteCancelled(inv *sip.Request) {
	if s.journal == nil || inv.Via() == nil {
		return
	}
	if branch, _ := inv.Via().Params.Get("branch"); branch != "" {
		s.journal.inviteCancelled(branch)
	}
}

// journalInviteEnded records that the INVITE of branch has ended.
func (s *Engine) journalInviteEnded(c *call, branch string) {
	if s.journal == nil || branch == "" {
		return
	}
	if err := s.journal.inviteEnded(branch); err != nil {
		c.log.Error("journal: end of an INVITE not recorded", "error", err)
	}
}

// journalInviteDone ends the INVITE of branch as its attempt returns,
// unless wagate is stopping and no final response came: the callee may
// still ring (it sent no 1xx, so no CANCEL could go; or the CANCEL went
// unanswered before the process exits), and the journal keeps the
// INVITE for the next start to cancel.
func (s *Engine) journalInviteDone(c *call, branch string, final bool) {
	if !final && s.ctx.Err() != nil {
		if s.journal != nil && branch != "" {
			c.log.Info("INVITE without a final response at shutdown: kept in the journal, cancelled at the next start")
		}
		return
	}
	s.journalInviteEnded(c, branch)
}

// pendingInvite is what the journal keeps of req, sent (its top Via
// carries the branch).
func pendingInvite(callID, leg string, req *sip.Request) (journalInvite, bool) {
	via, from, to, cid, cseq := req.Via(), req.From(), req.To(), req.CallID(), req.CSeq()
	if via == nil || from == nil || to == nil || cid == nil || cseq == nil {
		return journalInvite{}, false
	}
	branch, _ := via.Params.Get("branch")
	if branch == "" {
		return journalInvite{}, false
	}
	inv := journalInvite{Branch: branch, Call: callID, Leg: leg, URI: req.Recipient.String(),
		Via: via.Value(), From: from.Value(), To: to.Value(), CallID: cid.Value(), CSeq: cseq.SeqNo,
		Transport: req.Transport(), Dest: req.Destination()}
	for _, h := range req.GetHeaders("Route") {
		inv.Route = append(inv.Route, h.Value())
	}
	return inv, true
}

// request builds the INVITE's CANCEL (method sip.CANCEL), or the ACK of
// its non-2xx final response (method sip.ACK, to the To of that
// response): RFC 3261 §9.1 and §17.1.1.3, the same Request-URI, top Via,
// From, Call-ID, CSeq number and Route set. Parsing the text checks what
// the journal held: a line edited by hand fails here, not on the wire.
func (inv journalInvite) request(method sip.RequestMethod, to string) (*sip.Request, error) {
	if to == "" {
		to = inv.To
	}
	var b strings.Builder
	b.WriteString(string(method) + " " + inv.URI + " SIP/2.0\r\nVia: " + inv.Via + "\r\n")
	for _, r := range inv.Route {
		b.WriteString("Route: " + r + "\r\n")
	}
	b.WriteString("Max-Forwards: 70\r\nFrom: " + inv.From + "\r\nTo: " + to + "\r\nCall-ID: " + inv.CallID +
		"\r\nCSeq: " + strconv.FormatUint(uint64(inv.CSeq), 10) + " " + string(method) + "\r\nContent-Length: 0\r\n\r\n")
	msg, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("journal: %s of INVITE %s: %w", method, inv.Branch, err)
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil || req.CSeq() == nil {
		return nil, fmt.Errorf("journal: %s of INVITE %s: not a request", method, inv.Branch)
	}
	// The CANCEL carries the INVITE's own top Via, branch and all, for
	// the callee to match it (RFC 3261 §9.1).
	if b, _ := req.Via().Params.Get("branch"); b != inv.Branch {
		return nil, fmt.Errorf("journal: %s of INVITE %s: Via carries branch %q", method, inv.Branch, b)
	}
	if err := reparses(req); err != nil {
		return nil, fmt.Errorf("journal: %s of INVITE %s: %w", method, inv.Branch, err)
	}
	req.SetTransport(inv.Transport)
	if inv.Dest != "" {
		req.SetDestination(inv.Dest)
	}
	return req, nil
}

// reparses checks that msg, as sipgo will write it, parses again. sipgo
// reads some values it cannot write back ("Via: // x", a Route of
// ":x:0A"): parsed from a journal line edited by hand (or damaged), they
// would go out as a message no peer reads; they fail here instead.
func reparses(msg sip.Message) error {
	if _, err := sip.ParseMessage([]byte(msg.String())); err != nil {
		return fmt.Errorf("not sent as sipgo would write it: %w", err)
	}
	return nil
}

// restartCancels are the INVITEs cancelled at start-up, by branch, for
// ACKing their final responses (a 487, most often): no transaction of
// this run waits for those, and without the ACK the callee resends its
// response for 32 s (RFC 3261 Timer G/H).
type restartCancels struct {
	mu    sync.Mutex
	until time.Time
	inv   map[string]journalInvite
}

func (r *restartCancels) add(inv journalInvite, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inv == nil {
		r.inv = make(map[string]journalInvite)
	}
	r.inv[inv.Branch] = inv
	r.until = until
}

// take returns the cancelled INVITE of branch while its responses may
// still come; after that the set is dropped.
func (r *restartCancels) take(branch string) (journalInvite, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inv == nil {
		return journalInvite{}, false
	}
	if time.Now().After(r.until) {
		r.inv = nil
		return journalInvite{}, false
	}
	inv, ok := r.inv[branch]
	return inv, ok
}

// cancelLeftInvites sends CANCEL for each INVITE the previous run left
// pending, except those whose CANCEL the callee had answered
// (Cancelled): their 487 is ACKed if it comes, and a second CANCEL would
// only be answered again. A callee that answered meanwhile, or answers
// across the CANCEL, sends a 2xx no transaction waits for: that is ACKed
// and hung up as any stray 2xx to a leg of wagate's (onStrayResponse).
//
// RFC 3261 §9.1 has a client wait for a provisional response before it
// cancels; after a crash whether one came is not known, and there is no
// transaction left to wait in. The CANCEL goes at once: a callee that
// had the INVITE has long sent its 100, one that never had it answers
// 481 and was not ringing.
func (s *Engine) cancelLeftInvites(ctx context.Context, invites []journalInvite) {
	if len(invites) == 0 {
		return
	}
	cancelled := 0
	for _, inv := range invites {
		if inv.Cancelled {
			cancelled++
		}
	}
	s.log.Warn("cancelling INVITEs left ringing by a previous run", "invites", len(invites)-cancelled, "cancelled_before_stop", cancelled)
	until := time.Now().Add(64 * sip.T1)
	for _, inv := range invites {
		log := s.log.With("call", inv.Call, "leg", inv.Leg, "sip_call_id", inv.CallID)
		if inv.Cancelled {
			log.Info("INVITE cancelled before the previous run stopped: no second CANCEL; its 487 is ACKed")
			s.restartCancels.add(inv, until)
			continue
		}
		req, err := inv.request(sip.CANCEL, "")
		if err != nil {
			log.Error("journal: INVITE not restorable; no CANCEL sent", "error", err)
			continue
		}
		s.edge.Prepare(req)
		s.restartCancels.add(inv, until)
		s.wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 64*sip.T1)
			defer cancel()
			res, err := s.edge.Client().Do(ctx, req)
			switch {
			case err != nil || res == nil:
				log.Warn("CANCEL after restart failed", "error", errString(err))
			default:
				log.Info("CANCEL after restart answered", "code", res.StatusCode)
			}
		})
	}
}

// ackRestartCancelled ACKs a non-2xx final response to an INVITE that was
// cancelled at start-up; false when res is no such response.
func (s *Engine) ackRestartCancelled(res *sip.Response) bool {
	via := res.Via()
	if via == nil || res.To() == nil {
		return false
	}
	branch, _ := via.Params.Get("branch")
	inv, ok := s.restartCancels.take(branch)
	if !ok || res.CallID() == nil || res.CallID().Value() != inv.CallID {
		return false
	}
	ack, err := inv.request(sip.ACK, res.To().Value())
	if err != nil {
		return false
	}
	s.edge.Prepare(ack)
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		s.log.Debug("ACK of a cancelled INVITE's response failed", "sip_call_id", inv.CallID, "error", err)
	}
	s.log.Debug("final response to an INVITE cancelled after restart ACKed", "sip_call_id", inv.CallID, "code", res.StatusCode)
	return true
}

// journalIncoming is an INVITE wagate received and has not answered (a
// WhatsApp user's call ringing agents, a dialer's BIC ringing the user),
// as the final response a restart sends it needs: the caller would
// otherwise wait out its own timer (Timer B, 32 s; a dialer may wait
// longer) for a call that no longer exists.
type journalIncoming struct {
	Via       []string `json:"via"`
	From      string   `json:"from"`
	To        string   `json:"to"` // as received, without wagate's tag
	CSeq      uint32   `json:"cseq"`
	Source    string   `json:"source"`
	Transport string   `json:"transport"`
}

// incomingOf is what the journal keeps of A's INVITE req.
func incomingOf(req *sip.Request) *journalIncoming {
	from, to, cseq := req.From(), req.To(), req.CSeq()
	if from == nil || to == nil || cseq == nil {
		return nil
	}
	in := &journalIncoming{From: from.Value(), To: to.Value(), CSeq: cseq.SeqNo, Source: req.Source(), Transport: req.Transport()}
	for _, h := range req.GetHeaders("Via") {
		in.Via = append(in.Via, h.Value())
	}
	if len(in.Via) == 0 {
		return nil
	}
	return in
}

// restartFinal is the final response a restart sends to an INVITE it
// had not answered: the caller hears at once that the call failed and
// why, and may try another node.
const (
	restartFinalCode   = 503
	restartFinalReason = "Service Unavailable"
	restartFinalText   = "wagate restarted while the call was ringing"
)

// response is the final response to the INVITE, To tagged with localTag
// (the tag wagate's provisional responses carried).
func (in *journalIncoming) response(callID, localTag, userAgent string) (*sip.Response, error) {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(restartFinalCode) + " " + restartFinalReason + "\r\n")
	for _, v := range in.Via {
		b.WriteString("Via: " + v + "\r\n")
	}
	to := in.To
	if localTag != "" && !strings.Contains(strings.ToLower(to), ";tag=") {
		to += ";tag=" + localTag
	}
	b.WriteString("From: " + in.From + "\r\nTo: " + to + "\r\nCall-ID: " + callID +
		"\r\nCSeq: " + strconv.FormatUint(uint64(in.CSeq), 10) + " INVITE\r\n" +
		"Reason: SIP;cause=" + strconv.Itoa(restartFinalCode) + ";text=\"" + restartFinalText + "\"\r\n")
	if userAgent != "" {
		b.WriteString("Server: " + userAgent + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	msg, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("journal: final response to INVITE %s: %w", callID, err)
	}
	res, ok := msg.(*sip.Response)
	if !ok {
		return nil, fmt.Errorf("journal: final response to INVITE %s: not a response", callID)
	}
	if err := reparses(res); err != nil {
		return nil, fmt.Errorf("journal: final response to INVITE %s: %w", callID, err)
	}
	return res, nil
}

// responseWriter sends a response outside any transaction (sip.Server).
type responseWriter interface {
	WriteResponse(res *sip.Response) error
}

// answerLeftInvite sends the final error to A's INVITE of a call the
// previous run left unanswered. Only over UDP: the response goes where
// the INVITE came from (RFC 3581's received and rport, which are the
// source). Over TCP or TLS the connection the INVITE came on closed with
// the crash, and a caller's transaction fails on that (RFC 3261 §8.1.3.1);
// a new connection toward its Via is not tried. The response is sent
// again as RFC 3261 Timer G would (restartFinalResends), since no
// transaction is left to retransmit it and a lost datagram would leave the
// caller to wait out its Timer B. It reports whether the response was
// sent.
func (s *Engine) answerLeftInvite(ctx context.Context, jc journalCall, log *slog.Logger) bool {
	in := jc.AInvite
	if in == nil {
		return false
	}
	if !strings.EqualFold(in.Transport, "udp") {
		log.Info("caller's INVITE not answered after restart: its connection closed with the previous run", "transport", in.Transport)
		return false
	}
	w, ok := s.edge.(responseWriter)
	if !ok {
		return false
	}
	res, err := in.response(jc.A.CallID, jc.A.LocalTag, s.edge.Config().SIP.UserAgent)
	if err != nil {
		log.Error("journal: caller's INVITE not restorable; no final response sent", "error", err)
		return false
	}
	res.SetTransport("UDP")
	res.SetDestination(in.Source)
	if err := w.WriteResponse(res); err != nil {
		log.Warn("final response to the caller's INVITE after restart not sent", "error", err)
		return false
	}
	log.Info("caller's INVITE answered after restart", "code", restartFinalCode, "to", in.Source)
	s.wg.Go(func() { s.resendRestartFinal(ctx, w, res, log) })
	return true
}

// restartFinalResends are the waits before each resend of a restart's
// final response: T1, 2·T1, 4·T1 (RFC 3261 Timer G, 17.2.1), so the
// last goes 3.5 s after the first, well inside the caller's Timer B.
// Statelessly, the caller's ACK does not stop them: a caller that has the
// response absorbs the copies in its completed transaction (and ACKs
// each, as RFC 3261 §17.1.1.2 has it).
var restartFinalResends = []time.Duration{sip.T1, 2 * sip.T1, 4 * sip.T1}

// resendRestartFinal sends res again after each of restartFinalResends,
// until ctx or the engine ends.
func (s *Engine) resendRestartFinal(ctx context.Context, w responseWriter, res *sip.Response, log *slog.Logger) {
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i, d := range restartFinalResends {
		t.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if err := w.WriteResponse(res); err != nil {
			log.Debug("final response to the caller's INVITE after restart not resent", "resend", i+1, "error", err)
		}
	}
}
