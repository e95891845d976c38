package main

import (
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/sip"
)

// permissionGate adapts the permission store (embedded or Redis) to the
// gate sip consumes.
type permissionGate struct{ s permissions.Store }

func (g permissionGate) AdmitBIC(pnid, user string) (sip.Admission, sip.CallTicket) {
	d, t := g.s.Reserve(permissions.Key{PhoneNumberID: pnid, User: user})
	if !d.Allowed() || t == nil {
		return sip.Admission{Code: d.Code, Reason: d.Reason, MetaError: d.MetaError, RetryAfter: d.RetryAfter}, nil
	}
	// Code 0 tells sip to place the call.
	return sip.Admission{}, permissionTicket{t}
}

func (g permissionGate) GrantFromUIC(pnid, user string) {
	g.s.GrantFromUIC(permissions.Key{PhoneNumberID: pnid, User: user})
}

type permissionTicket struct{ t permissions.Reservation }

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
	case sip.OutcomeNoPermission:
		out = permissions.MetaNoPermission
	}
	p.t.Finish(out)
}
