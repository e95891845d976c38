package main

import (
	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/permissions"
)

// permissionGate adapts the permission store (embedded or Redis) to the
// gate sip consumes.
type permissionGate struct{ s permissions.Store }

func (g permissionGate) AdmitBIC(pnid, user string) (b2bua.Admission, b2bua.CallTicket) {
	d, t := g.s.Reserve(permissions.Key{PhoneNumberID: pnid, User: user})
	if !d.Allowed() || t == nil {
		return b2bua.Admission{Code: d.Code, Reason: d.Reason, MetaError: d.MetaError, RetryAfter: d.RetryAfter}, nil
	}
	// Code 0 tells sip to place the call.
	return b2bua.Admission{}, permissionTicket{t}
}

func (g permissionGate) GrantFromUIC(pnid, user string) {
	g.s.GrantFromUIC(permissions.Key{PhoneNumberID: pnid, User: user})
}

type permissionTicket struct{ t permissions.Reservation }

func (p permissionTicket) Connected() { p.t.Connected() }

func (p permissionTicket) Finish(o b2bua.Outcome) {
	out := permissions.Failed
	switch o {
	case b2bua.OutcomeAnswered:
		out = permissions.Answered
	case b2bua.OutcomeUnanswered:
		out = permissions.Unanswered
	case b2bua.OutcomeRejected:
		out = permissions.Rejected
	case b2bua.OutcomeCancelled:
		out = permissions.Cancelled
	case b2bua.OutcomeNoPermission:
		out = permissions.MetaNoPermission
	case b2bua.OutcomeNotSent:
		out = permissions.NotSent
	case b2bua.OutcomeDailyCap:
		out = permissions.MetaDailyCap
	}
	p.t.Finish(out)
}
