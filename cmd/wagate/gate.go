package main

import (
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/sip"
)

// permissionGate adapts the permission cache to the gate sip consumes.
type permissionGate struct{ c *permissions.Cache }

func (g permissionGate) AdmitBIC(pnid, user string) (sip.Admission, sip.CallTicket) {
	d, t := g.c.Admit(permissions.Key{PhoneNumberID: pnid, User: user})
	if !d.Allowed() {
		return sip.Admission{Code: d.Code, Reason: d.Reason, MetaError: d.MetaError, RetryAfter: d.RetryAfter}, nil
	}
	// Code 0 tells sip to place the call.
	return sip.Admission{}, permissionTicket{t}
}

func (g permissionGate) GrantFromUIC(pnid, user string) {
	g.c.GrantFromUIC(permissions.Key{PhoneNumberID: pnid, User: user})
}

type permissionTicket struct{ t *permissions.Ticket }

func (p permissionTicket) Connected() { p.t.Connected() }

func (p permissionTicket) Finish(o sip.Outcome) {
	out := permissions.Failed
	switch o {
	case sip.OutcomeAnswered:
		out = permissions.Answered
	case sip.OutcomeUnanswered:
		out = permissions.Unanswered
	case sip.OutcomeRejected:
		out = permissions.Rejected
	case sip.OutcomeCancelled:
		out = permissions.Cancelled
	}
	p.t.Finish(out)
}
