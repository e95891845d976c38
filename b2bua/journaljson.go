package b2bua

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendUpLine appends the journal's "up" line for c, byte for byte what
// json.Marshal(journalLine{Op: "up", Call: &c}) writes, without the
// reflection: the journal writes one per answered call, and encoding/json
// was most of what recording a call cost. TestJournalLineEncoding holds
// the two to the same bytes.
func appendUpLine(b []byte, c *journalCall) ([]byte, error) {
	b = append(b, `{"op":"up","call":{"id":`...)
	b = appendJSONString(b, c.ID)
	b = append(b, `,"direction":`...)
	b = appendJSONString(b, string(c.Direction))
	b = append(b, `,"a_endpoint":`...)
	b = appendJSONString(b, c.AEndpoint)
	b = append(b, `,"b_endpoint":`...)
	b = appendJSONString(b, c.BEndpoint)
	b = appendOmitEmpty(b, `,"business":`, c.Business)
	b = appendOmitEmpty(b, `,"phone_number_id":`, c.PNID)
	b = appendOmitEmpty(b, `,"wa_call_id":`, c.WACallID)
	b = appendOmitEmpty(b, `,"user":`, c.User)
	var err error
	if b, err = appendJSONTime(append(b, `,"created":`...), c.Created); err != nil {
		return nil, err
	}
	if b, err = appendJSONTime(append(b, `,"answered":`...), c.Answered); err != nil {
		return nil, err
	}
	if !c.Ringing.IsZero() {
		if b, err = appendJSONTime(append(b, `,"ringing":`...), c.Ringing); err != nil {
			return nil, err
		}
	}
	b = appendOmitEmpty(b, `,"b_user":`, c.BUser)
	b = appendOmitEmpty(b, `,"hunt":`, c.Hunt)
	b = appendOmitEmpty(b, `,"origin":`, c.Origin)
	b = appendOmitEmpty(b, `,"permission":`, c.Permission)
	if c.AfterHours {
		b = append(b, `,"after_hours":true`...)
	}
	b = appendOmitEmpty(b, `,"campaign_id":`, c.CampaignID)
	b = appendOmitEmpty(b, `,"callback_data":`, c.CallbackData)
	b = appendOmitEmpty(b, `,"recording_id":`, c.RecordingID)
	if c.AUp {
		b = append(b, `,"a_up":true`...)
	}
	b = append(b, `,"a":`...)
	b = appendJournalDialog(b, &c.A)
	b = append(b, `,"b":`...)
	b = appendJournalDialog(b, &c.B)
	if in := c.AInvite; in != nil {
		b = append(b, `,"a_invite":{"via":`...)
		b = appendJSONStrings(b, in.Via)
		b = append(b, `,"from":`...)
		b = appendJSONString(b, in.From)
		b = append(b, `,"to":`...)
		b = appendJSONString(b, in.To)
		b = append(b, `,"cseq":`...)
		b = strconv.AppendUint(b, uint64(in.CSeq), 10)
		b = append(b, `,"source":`...)
		b = appendJSONString(b, in.Source)
		b = append(b, `,"transport":`...)
		b = appendJSONString(b, in.Transport)
		b = append(b, '}')
	}
	return append(b, "}}"...), nil
}

// appendDownLine is json.Marshal(journalLine{Op: "down", ID: id, CDR:
// cdr}), cdr being compact JSON (json.Marshal's).
func appendDownLine(b []byte, id string, cdr []byte) []byte {
	if id == "" {
		return append(b, `{"op":"down"}`...)
	}
	b = append(b, `{"op":"down","id":`...)
	b = appendJSONString(b, id)
	if len(cdr) > 0 {
		b = append(b, `,"cdr":`...)
		b = append(b, cdr...)
	}
	return append(b, '}')
}

func appendJournalDialog(b []byte, d *journalDialog) []byte {
	b = append(b, `{"call_id":`...)
	b = appendJSONString(b, d.CallID)
	b = append(b, `,"local_uri":`...)
	b = appendJSONString(b, d.LocalURI)
	b = append(b, `,"local_tag":`...)
	b = appendJSONString(b, d.LocalTag)
	b = append(b, `,"remote_uri":`...)
	b = appendJSONString(b, d.RemoteURI)
	b = append(b, `,"remote_tag":`...)
	b = appendJSONString(b, d.RemoteTag)
	b = append(b, `,"remote_target":`...)
	b = appendJSONString(b, d.RemoteTarget)
	if len(d.RouteSet) > 0 {
		b = append(b, `,"route_set":[`...)
		for i, r := range d.RouteSet {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, `,"cseq":`...)
	b = strconv.AppendUint(b, uint64(d.CSeq), 10)
	b = append(b, `,"transport":`...)
	b = appendJSONString(b, d.Transport)
	return append(b, '}')
}

func appendOmitEmpty(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, key...), s)
}

// appendJSONString quotes s as encoding/json does. The fast path is the
// printable ASCII SIP is written in; anything else (escapes, HTML
// characters json escapes, non-ASCII) goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONTime is time.Time's MarshalJSON (RFC 3339 with nanoseconds,
// quoted), with its error for a time RFC 3339 cannot write.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	b, err := t.AppendText(append(b, '"'))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return append(b, '"'), nil
}

// appendInviteLine is json.Marshal(journalLine{Op: "inv", Inv: inv}).
func appendInviteLine(b []byte, inv *journalInvite) []byte {
	b = append(b, `{"op":"inv","inv":{"branch":`...)
	b = appendJSONString(b, inv.Branch)
	b = append(b, `,"call":`...)
	b = appendJSONString(b, inv.Call)
	b = append(b, `,"leg":`...)
	b = appendJSONString(b, inv.Leg)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, inv.URI)
	b = append(b, `,"via":`...)
	b = appendJSONString(b, inv.Via)
	b = append(b, `,"from":`...)
	b = appendJSONString(b, inv.From)
	b = append(b, `,"to":`...)
	b = appendJSONString(b, inv.To)
	b = append(b, `,"call_id":`...)
	b = appendJSONString(b, inv.CallID)
	b = append(b, `,"cseq":`...)
	b = strconv.AppendUint(b, uint64(inv.CSeq), 10)
	if len(inv.Route) > 0 {
		b = append(b, `,"route":[`...)
		for i, r := range inv.Route {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, `,"transport":`...)
	b = appendJSONString(b, inv.Transport)
	b = appendOmitEmpty(b, `,"dest":`, inv.Dest)
	if inv.Cancelled {
		b = append(b, `,"cancelled":true`...)
	}
	return append(b, "}}"...)
}

// appendInviteEndLine is json.Marshal(journalLine{Op: "inv-end", ID:
// branch}).
func appendInviteEndLine(b []byte, branch string) []byte {
	if branch == "" {
		return append(b, `{"op":"inv-end"}`...)
	}
	b = append(b, `{"op":"inv-end","id":`...)
	b = appendJSONString(b, branch)
	return append(b, '}')
}

// appendJSONStrings is a []string as encoding/json writes it (null for
// nil).
func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}
