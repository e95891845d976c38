package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wagate/wagate/api"
	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// callControl gives the API the B2BUA's live calls (api.CallControl).
type callControl struct{ e *b2bua.Engine }

func (c callControl) Calls() []api.LiveCall {
	calls := c.e.Calls()
	out := make([]api.LiveCall, 0, len(calls))
	for _, ci := range calls {
		out = append(out, liveCall(ci))
	}
	return out
}

func (c callControl) Call(id string) (api.LiveCall, bool) {
	ci, ok := c.e.Call(id)
	if !ok {
		return api.LiveCall{}, false
	}
	return liveCall(ci), true
}

func (c callControl) Hangup(id, reason string) (api.LiveCall, error) {
	ci, err := c.e.Hangup(id, reason)
	if errors.Is(err, b2bua.ErrNoSuchCall) {
		return api.LiveCall{}, fmt.Errorf("%w: %s", api.ErrNoSuchCall, id)
	}
	if err != nil {
		return api.LiveCall{}, err
	}
	return liveCall(ci), nil
}

func (c callControl) Transfer(id string, t api.TransferTarget) (api.LiveCall, error) {
	ci, err := c.e.Transfer(id, b2bua.Target{Endpoint: t.Endpoint, User: t.User, Hunt: t.Hunt})
	switch {
	case err == nil:
		return liveCall(ci), nil
	case errors.Is(err, b2bua.ErrNoSuchCall):
		return api.LiveCall{}, fmt.Errorf("%w: %s", api.ErrNoSuchCall, id)
	case errors.Is(err, b2bua.ErrBadTarget):
		return api.LiveCall{}, fmt.Errorf("%w: %s", api.ErrTransferTarget, strings.TrimPrefix(err.Error(), b2bua.ErrBadTarget.Error()+": "))
	case errors.Is(err, b2bua.ErrNotAnswered), errors.Is(err, b2bua.ErrNoAgent), errors.Is(err, b2bua.ErrTransferring),
		errors.Is(err, b2bua.ErrJoined), errors.Is(err, b2bua.ErrTooManyTransfers):
		return api.LiveCall{}, fmt.Errorf("%w: %s", api.ErrTransferConflict, strings.TrimPrefix(err.Error(), "b2bua: "))
	}
	return api.LiveCall{}, err
}

func liveCall(ci b2bua.CallInfo) api.LiveCall {
	lc := api.LiveCall{
		ID: ci.ID, Direction: string(ci.Direction), Origin: ci.Origin, State: ci.State,
		BusinessNumber: ci.BusinessNumber, PhoneNumberID: ci.PhoneNumberID, User: ci.User, WACallID: ci.WACallID,
		CreatedAt: ci.CreatedAt.UTC(), RingingAt: utc(ci.RingingAt), AnsweredAt: utc(ci.AnsweredAt),
		A: liveLeg(ci.A), B: liveLeg(ci.B),
	}
	for _, r := range ci.Ringing {
		lc.Ringing = append(lc.Ringing, api.RingingLeg{Leg: r.Leg, Endpoint: r.Endpoint, User: r.User,
			SIPCallID: r.SIPCallID, StartedAt: r.StartedAt.UTC()})
	}
	return lc
}

func liveLeg(l b2bua.LegInfo) api.LiveLeg {
	out := api.LiveLeg{Endpoint: l.Endpoint, SIPCallID: l.SIPCallID, Codec: l.Codec, Encryption: l.Encryption, Received: liveMedia(l.Received)}
	if l.RemoteMedia.IsValid() {
		out.RemoteMedia = l.RemoteMedia.String()
	}
	return out
}

func liveMedia(d media.DirectionReport) api.LiveMedia {
	return api.LiveMedia{
		Packets: d.Packets, Bytes: d.Bytes, Forwarded: d.Forwarded, Lost: d.Lost, JitterMS: d.JitterMS,
		SRTPAuthFailures: d.SRTPAuthFailures, SRTPReplayFailures: d.SRTPReplayFailures, Late: d.Late,
	}
}

// utc keeps a zero time zero (omitted from the JSON).
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// Originate starts a click-to-call (api.Originator).
func (c callControl) Originate(_ context.Context, r api.ClickToCall) (api.LiveCall, *api.Refusal, error) {
	ci, ref, err := c.e.Originate(sipedge.ClickToCall{Business: r.BusinessNumber, User: r.User,
		Flow: r.Callflow, AgentEndpoint: r.AgentEndpoint, AgentUser: r.AgentExtension, AgentRing: r.AgentRing, AgentHunt: r.AgentHunt,
		CampaignID: r.CampaignID, CallbackData: r.CallbackData})
	var fe *sipedge.FieldError
	switch {
	case errors.As(err, &fe):
		return api.LiveCall{}, nil, &api.FieldError{Field: fe.Field, Msg: fe.Msg}
	case err != nil:
		return api.LiveCall{}, nil, err
	case ref != nil:
		return api.LiveCall{}, &api.Refusal{SIPCode: ref.Code, SIPReason: ref.Reason, WABAError: ref.MetaError,
			RetryAfter: ref.RetryAfter, Permission: ref.Permission, Cause: ref.Cause}, nil
	}
	return liveCall(ci), nil, nil
}
