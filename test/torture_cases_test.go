package test

// The verdict of RFC 4475 ("SIP Torture Test Messages") and RFC 5118 ("SIP
// Torture Test Messages for IPv6") on each of their messages, and what
// wagate must answer when a configured endpoint sends it. The messages are
// in test/torture/rfc4475 and test/torture/rfc5118 (see the README there);
// torture_test.go sends them.
//
// Want is what the RFC expects of the receiving element, narrowed by
// wagate's edge rules where the RFC leaves a choice, and widened only where
// the RFC's expectation assumes an element wagate is not. The edge rules are
// the checks wagate makes on every request before its B2BUA sees it, in this
// order ("edge step N" below): 1 size (513), 2 start line (400), 3 version
// (505), 4 mandatory headers and Content-Length (400 with Warning 399),
// 5 Require (420), 6 Max-Forwards (483), 7 the B2BUA of docs/sip.md.
// Widened:
//   - wagate is no registrar and no proxy: REGISTER and MESSAGE get the
//     501 of docs/sip.md ("Other methods → 501"); RFC 4475 §3.3.7 names 405
//     as what an endpoint that is not a registrar answers, so 405 passes too.
//   - wagate is a UAS on the A leg whose Request-URIs are business numbers
//     (UIC, from the whatsapp endpoint) or WhatsApp users in E.164 (BIC, from
//     a dialer). RFC 3261 §8.2.2.1 (Request-URI not accepted: 404) comes
//     before §8.2.3 (body not understood: 415), so an INVITE for
//     sip:user@example.com may get the 404 of docs/sip.md from the whatsapp
//     endpoint, and the documented 484 (callee not E.164) from a dialer,
//     where the RFC's example element would go on to look at the body.
//   - A request with a To tag is in-dialog; for no known dialog it gets 481
//     (RFC 3261 §12.2.2), which is how a UAS "processes normally" the
//     RFC's valid BYEs and re-INVITEs.

// verdict is the RFC's judgement of a message's syntax.
type verdict int

const (
	// valid: well-formed; it must never get a parse-error answer.
	valid verdict = iota
	// tolerated: invalid by RFC 3261's grammar, but the RFC says a
	// receiver must (or should) accept it; treated as valid.
	tolerated
	// invalid: malformed; the RFC says how to reject it.
	invalid
	// legacy: RFC 2543 syntax, to be accepted only by elements that want
	// RFC 2543 compatibility (wagate does not).
	legacy
	// undescribed: in the RFC's archive but not described in its text.
	undescribed
)

func (v verdict) String() string {
	return [...]string{"valid", "tolerated", "invalid", "legacy", "undescribed"}[v]
}

// noAnswer in a code list: nothing at all may come back.
const noAnswer = 0

// tortureCase is one message of the corpus and what must happen to it.
type tortureCase struct {
	RFC     int    // 4475 or 5118
	File    string // test/torture/rfc<RFC>/<File>.dat
	Section string // where the RFC describes it
	Verdict verdict
	RFCSays string // what the RFC says the receiving element does
	// Want lists the final status codes accepted when the whatsapp endpoint
	// (meta) sends the message; {noAnswer} when nothing may come back.
	Want []int
	// TCP replaces Want over TCP, where the RFC says framing changes the
	// answer; nil means Want.
	TCP []int
	// Dialer, for INVITEs, lists the codes accepted when a dialer sends
	// the message (wagate's BIC path); nil: the dialer does not send it.
	Dialer []int
	// Why says how Want follows from the RFC and the spec where it is not
	// simply the RFC's code.
	Why string
	// Warning: a 400 must carry "Warning: 399 …" (edge step 4).
	Warning bool
	// Need names a header the answer must carry (besides the rules every
	// answer follows: 405 has Allow, 415 Accept, 420 Unsupported).
	Need string
	// Unsupported lists option tags a 420 must name in Unsupported.
	Unsupported []string
	// CloseTCP: over TCP, wagate must close the connection after
	// answering: the framing error is not recoverable (RFC 4475 §3.1.2.3).
	CloseTCP bool
	// IgnoredCallID is the Call-ID of octets the RFC says must be ignored
	// over UDP: nothing may answer it.
	IgnoredCallID string
}

const (
	whyRegister   = "wagate is no registrar: REGISTER gets docs/sip.md's 501 (RFC 4475 §3.3.7: 405 from an endpoint that is not a registrar)"
	whyUICUnknown = "sip:user@… names no business number: 404 from the whatsapp endpoint, 484 (not E.164) from a dialer (RFC 3261 §8.2.2.1)"
	whyInDialog   = "To tag for no known dialog: 481 is a UAS's normal processing (RFC 3261 §12.2.2; edge step 7)"
)

var tortureCases = []tortureCase{
	// RFC 4475 §3.1.1: valid messages.
	{RFC: 4475, File: "wsinv", Section: "3.1.1.1 A Short Tortuous INVITE", Verdict: valid,
		RFCSays: "all elements treat it as a well-formed request",
		Want:    []int{481}, Dialer: []int{481}, Why: whyInDialog},
	{RFC: 4475, File: "intmeth", Section: "3.1.1.2 Wide Range of Valid Characters", Verdict: valid,
		RFCSays: "endpoints answer 501 listing the methods they understand in Allow",
		Want:    []int{501}, Need: "Allow"},
	{RFC: 4475, File: "esc01", Section: "3.1.1.3 Valid Use of the % Escaping Mechanism", Verdict: valid,
		RFCSays: "a parser must accept it; % HEX HEX is equivalent to the character",
		Want:    []int{404}, Dialer: []int{484}, Why: whyUICUnknown},
	{RFC: 4475, File: "escnull", Section: "3.1.1.4 Escaped Nulls in URIs", Verdict: valid,
		RFCSays: "well formed; registers two distinct contacts",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 4475, File: "esc02", Section: "3.1.1.5 Use of % When It Is Not an Escape", Verdict: valid,
		RFCSays: "unknown method (not REGISTER); an endpoint rejects it with 501",
		Want:    []int{501}},
	{RFC: 4475, File: "lwsdisp", Section: "3.1.1.6 Message with No LWS between Display Name and <", Verdict: tolerated,
		RFCSays: "elements should accept it as well formed (a grammar bug of RFC 3261)",
		Want:    []int{200}},
	{RFC: 4475, File: "longreq", Section: "3.1.1.7 Long Values in Header Fields", Verdict: valid,
		RFCSays: "well formed",
		Want:    []int{404}, Dialer: []int{484}, Why: whyUICUnknown},
	{RFC: 4475, File: "dblreq", Section: "3.1.1.8 Extra Trailing Octets in a UDP Datagram", Verdict: valid,
		RFCSays: "handle the REGISTER normally; the INVITE-like octets after it are noise to ignore (RFC 3261 §18.3)",
		Want:    []int{501, 405}, Why: whyRegister + "; over TCP the trailing INVITE is a second message on the stream and is not checked",
		IgnoredCallID: "dblreq.0ha0isnda977644900765@192.0.2.15"},
	{RFC: 4475, File: "semiuri", Section: "3.1.1.9 Semicolon-Separated Parameters in URI User Part", Verdict: valid,
		RFCSays: "well formed; the user part is \"user;par=u@example.net\"",
		Want:    []int{200}},
	{RFC: 4475, File: "transports", Section: "3.1.1.10 Varied and Unknown Transport Types", Verdict: valid,
		RFCSays: "well formed; processed as if every Via named a known transport",
		Want:    []int{200}},
	{RFC: 4475, File: "mpart01", Section: "3.1.1.11 Multipart MIME Message", Verdict: valid,
		RFCSays: "parsers must frame and accept it even if the application does not support the body",
		Want:    []int{501, 405}, Why: "wagate does not implement MESSAGE: docs/sip.md's 501"},
	{RFC: 4475, File: "unreason", Section: "3.1.1.12 Unusual Reason Phrase", Verdict: valid,
		RFCSays: "a well-formed response; a parser must accept it",
		Want:    []int{noAnswer}, Why: "a response matching no transaction is absorbed: nothing answers a response"},
	{RFC: 4475, File: "noreason", Section: "3.1.1.13 Empty Reason Phrase", Verdict: valid,
		RFCSays: "a well-formed response; a parser must accept it",
		Want:    []int{noAnswer}, Why: "a response matching no transaction is absorbed"},

	// RFC 4475 §3.1.2: invalid messages.
	{RFC: 4475, File: "badinv01", Section: "3.1.2.1 Extraneous Header Field Separators", Verdict: invalid,
		RFCSays: "respond 400",
		Want:    []int{400}, Dialer: []int{400}, Warning: true},
	{RFC: 4475, File: "clerr", Section: "3.1.2.2 Content Length Larger Than Message", Verdict: invalid,
		RFCSays: "over UDP respond 400; over TCP wait for more data and close the connection if none comes",
		Want:    []int{400}, TCP: []int{noAnswer}, Dialer: []int{400}, Warning: true},
	{RFC: 4475, File: "ncl", Section: "3.1.2.3 Negative Content-Length", Verdict: invalid,
		RFCSays: "respond with an error; over TCP the framing error is not recoverable and the connection should be closed",
		Want:    []int{400}, Dialer: []int{400}, Warning: true, CloseTCP: true},
	{RFC: 4475, File: "scalar02", Section: "3.1.2.4 Request Scalar Fields with Overlarge Values", Verdict: invalid,
		RFCSays: "respond 400 because of the CSeq",
		Want:    []int{400}, Warning: true},
	{RFC: 4475, File: "scalarlg", Section: "3.1.2.5 Response Scalar Fields with Overlarge Values", Verdict: invalid,
		RFCSays: "discard the response",
		Want:    []int{noAnswer}},
	{RFC: 4475, File: "quotbal", Section: "3.1.2.6 Unterminated Quoted String in Display Name", Verdict: invalid,
		RFCSays: "return 400 (an element could infer the quote)",
		Want:    []int{400}, Dialer: []int{400}, Warning: true,
		Why: "edge step 4: a To that does not parse is 400"},
	{RFC: 4475, File: "ltgtruri", Section: "3.1.2.7 <> Enclosing Request-URI", Verdict: invalid,
		RFCSays: "reasonable always to reject with 400",
		Want:    []int{400}, Dialer: []int{400}, Why: "edge step 2: bad Request-URI"},
	{RFC: 4475, File: "lwsruri", Section: "3.1.2.8 Malformed SIP Request-URI (embedded LWS)", Verdict: invalid,
		RFCSays: "respond 400",
		Want:    []int{400}, Dialer: []int{400}, Why: "edge step 2: the start line is not METHOD SP Request-URI SP SIP-Version"},
	{RFC: 4475, File: "lwsstart", Section: "3.1.2.9 Multiple SP Separating Request-Line Elements", Verdict: invalid,
		RFCSays: "acceptable to reject as malformed; a liberal element may ignore the extra SP",
		Want:    []int{400}, Dialer: []int{400}, Why: "edge step 2 takes the strict choice"},
	{RFC: 4475, File: "trws", Section: "3.1.2.10 SP Characters at End of Request-Line", Verdict: invalid,
		RFCSays: "acceptable to reject as malformed; a liberal element may ignore the extra SP",
		Want:    []int{400}, Why: "edge step 2 takes the strict choice"},
	{RFC: 4475, File: "escruri", Section: "3.1.2.11 Escaped Headers in SIP Request-URI", Verdict: invalid,
		RFCSays: "acceptable to reject with 400; a liberal element may ignore the headers",
		Want:    []int{400}, Dialer: []int{400},
		Why: "edge step 2: headers are not allowed in a Request-URI (RFC 3261 §19.1.1), so it is a bad Request-URI"},
	{RFC: 4475, File: "baddate", Section: "3.1.2.12 Invalid Time Zone in Date Header Field", Verdict: invalid,
		RFCSays: "may be rejected, but shouldn't be unless the Date matters; a liberal element ignores it",
		Want:    []int{404}, Dialer: []int{484},
		Why: "wagate does not use Date, so it is processed: " + whyUICUnknown},
	{RFC: 4475, File: "regbadct", Section: "3.1.2.13 Failure to Enclose name-addr URI in <>", Verdict: invalid,
		RFCSays: "reasonable to respond 400; a liberal element may infer the brackets",
		Want:    []int{400, 501, 405},
		Why:     "Contact is not one of the headers the edge checks, so a liberal reading reaches REGISTER handling: " + whyRegister},
	{RFC: 4475, File: "badaspec", Section: "3.1.2.14 Spaces within addr-spec", Verdict: invalid,
		RFCSays: "reasonable to reject with 400; parsers must not break",
		Want:    []int{400}, Warning: true, Why: "edge step 4: a To that does not parse is 400"},
	{RFC: 4475, File: "baddn", Section: "3.1.2.15 Non-token Characters in Display Name", Verdict: invalid,
		RFCSays: "reasonable always to reject with 400",
		Want:    []int{400}, Warning: true, Why: "edge step 4: To and From do not parse"},
	{RFC: 4475, File: "badvers", Section: "3.1.2.16 Unknown Protocol Version", Verdict: invalid,
		RFCSays: "respond 505",
		Want:    []int{505}},
	{RFC: 4475, File: "mismatch01", Section: "3.1.2.17 Start Line and CSeq Method Mismatch", Verdict: invalid,
		RFCSays: "respond 400",
		Want:    []int{400}, Warning: true},
	{RFC: 4475, File: "mismatch02", Section: "3.1.2.18 Unknown Method with CSeq Method Mismatch", Verdict: invalid,
		RFCSays: "respond 501 (preferred) or 400",
		Want:    []int{400}, Warning: true, Why: "edge step 4: a CSeq method that differs from the method is 400 (the RFC's second choice)"},
	{RFC: 4475, File: "bigcode", Section: "3.1.2.19 Overlarge Response Code", Verdict: invalid,
		RFCSays: "drop the response",
		Want:    []int{noAnswer}},

	// RFC 4475 §3.2: transaction layer.
	{RFC: 4475, File: "badbranch", Section: "3.2.1 Missing Transaction Identifier", Verdict: valid,
		RFCSays: "must not break; reject with 400 (statelessly) or fall back to RFC 2543 transaction matching",
		Want:    []int{400, 200}, Why: "both of the RFC's choices pass: the branch parses as a token"},

	// RFC 4475 §3.3: application layer.
	{RFC: 4475, File: "insuf", Section: "3.3.1 Missing Required Header Fields", Verdict: invalid,
		RFCSays: "must not break; ideally respond 400",
		Want:    []int{400}, Dialer: []int{400}, Warning: true},
	{RFC: 4475, File: "unkscm", Section: "3.3.2 Request-URI with Unknown Scheme", Verdict: valid,
		RFCSays: "a well-formed request; reject with 416",
		Want:    []int{416}},
	{RFC: 4475, File: "novelsc", Section: "3.3.3 Request-URI with Known but Atypical Scheme", Verdict: valid,
		RFCSays: "well formed; 416 from an element that never accepts the scheme (404 from one that might)",
		Want:    []int{416}, Why: "wagate never accepts soap.beep: Request-URIs"},
	{RFC: 4475, File: "unksm2", Section: "3.3.4 Unknown URI Schemes in Header Fields", Verdict: valid,
		RFCSays: "syntactically valid; a registrar rejects it with 400 (To must be a SIP AOR)",
		Want:    []int{400, 501, 405}, Why: whyRegister},
	{RFC: 4475, File: "bext01", Section: "3.3.5 Proxy-Require and Require", Verdict: valid,
		RFCSays: "respond 420 with Unsupported listing the features (a UAS: those of Require)",
		Want:    []int{420}, Unsupported: []string{"nothingSupportsThis", "nothingSupportsThisEither"}},
	{RFC: 4475, File: "invut", Section: "3.3.6 Unknown Content-Type", Verdict: valid,
		RFCSays: "syntactically valid; an endpoint rejects it with 415",
		Want:    []int{415, 404}, Dialer: []int{415, 484},
		Why: "415 with Accept (RFC 3261 §8.2.3), unless the Request-URI is refused first: " + whyUICUnknown},
	{RFC: 4475, File: "regaut01", Section: "3.3.7 Unknown Authorization Scheme", Verdict: valid,
		RFCSays: "well formed; an endpoint that is not a registrar rejects it, 405 is appropriate",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 4475, File: "multi01", Section: "3.3.8 Multiple Values in Single Value Required Fields", Verdict: invalid,
		RFCSays: "must not break; respond 400",
		Want:    []int{400}, Dialer: []int{400}, Warning: true},
	{RFC: 4475, File: "mcl01", Section: "3.3.9 Multiple Content-Length Values", Verdict: invalid,
		RFCSays: "respond with an error; over TCP the framing error is not recoverable and the connection should be closed",
		Want:    []int{400}, Warning: true, CloseTCP: true},
	{RFC: 4475, File: "bcast", Section: "3.3.10 200 OK Response with Broadcast Via Header Field Value", Verdict: valid,
		RFCSays: "well formed; an endpoint discards it (a proxy must not forward it to the broadcast address)",
		Want:    []int{noAnswer}},
	{RFC: 4475, File: "zeromf", Section: "3.3.11 Max-Forwards of Zero", Verdict: valid,
		RFCSays: "a proxy answers 483; an endpoint processes it as if Max-Forwards were positive",
		Want:    []int{200}, Why: "edge step 6: OPTIONS with Max-Forwards 0 is answered normally by a UAS"},
	{RFC: 4475, File: "cparam01", Section: "3.3.12 REGISTER with a Contact Header Parameter", Verdict: valid,
		RFCSays: "the REGISTER should succeed (at a registrar)",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 4475, File: "cparam02", Section: "3.3.13 REGISTER with a url-parameter", Verdict: valid,
		RFCSays: "the REGISTER should succeed (at a registrar)",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 4475, File: "regescrt", Section: "3.3.14 REGISTER with a URL Escaped Header", Verdict: valid,
		RFCSays: "the REGISTER should succeed (at a registrar)",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 4475, File: "sdp01", Section: "3.3.15 Unacceptable Accept Offering", Verdict: valid,
		RFCSays: "could respond 406 (Warning 399); 400 is also appropriate",
		Want:    []int{406, 404}, Dialer: []int{406, 484},
		Why: "406, unless the Request-URI is refused first (a 404/484 carries no body, so Accept is honoured): " + whyUICUnknown},

	// RFC 4475 §3.4: backward compatibility.
	{RFC: 4475, File: "inv2543", Section: "3.4.1 INVITE with RFC 2543 Syntax", Verdict: legacy,
		RFCSays: "legal RFC 2543; should be accepted by elements that want backward compatibility",
		Want:    []int{400}, Dialer: []int{400}, Warning: true,
		Why: "edge step 4: no Max-Forwards is 400; wagate claims no RFC 2543 compatibility. Over TCP a Content-Length is added (RFC 3261 §18.3 requires one on streams)"},

	// In the archive, not in the text: no SIP-Version, no Via, no CSeq.
	{RFC: 4475, File: "test", Section: "archive only (not described)", Verdict: undescribed,
		RFCSays: "-",
		Want:    []int{noAnswer}, Dialer: []int{noAnswer},
		Why: "edge rules: without a top Via and a CSeq no response is possible, so it is dropped"},

	// RFC 5118 §4 (the archive's bare LF line ends become CRLF and each
	// Content-Length is recomputed before sending: see the README).
	{RFC: 5118, File: "ipv6-good", Section: "4.1 Valid SIP Message with an IPv6 Reference", Verdict: valid,
		RFCSays: "well formed",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 5118, File: "ipv6-bad", Section: "4.2 Invalid SIP Message with an IPv6 Reference", Verdict: invalid,
		RFCSays: "respond 400 (the Request-URI's IPv6 reference lacks [ ])",
		Want:    []int{400}, Why: "edge step 2: bad Request-URI"},
	{RFC: 5118, File: "port-ambiguous", Section: "4.3 Port Ambiguous in a SIP URI", Verdict: valid,
		RFCSays: "well formed (the port is part of the address)",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 5118, File: "port-unambiguous", Section: "4.4 Port Unambiguous in a SIP URI", Verdict: valid,
		RFCSays: "well formed",
		Want:    []int{501, 405}, Why: whyRegister},
	{RFC: 5118, File: "via-received-param-with-delim", Section: "4.5 IPv6 Reference Delimiters in Via Header", Verdict: tolerated,
		RFCSays: "invalid by the strict grammar, but robust implementations must parse the Via and continue processing",
		Want:    []int{481}, Why: whyInDialog},
	{RFC: 5118, File: "via-received-param-no-delim", Section: "4.5 IPv6 Reference Delimiters in Via Header", Verdict: valid,
		RFCSays: "valid; must be parsed",
		Want:    []int{200}},
	{RFC: 5118, File: "ipv6-in-sdp", Section: "4.6 SIP Request with IPv6 Addresses in SDP Body", Verdict: valid,
		RFCSays: "valid and well formed",
		Want:    []int{404}, Dialer: []int{484}, Why: whyUICUnknown},
	{RFC: 5118, File: "mult-ip-in-header", Section: "4.7 Multiple IP Addresses in SIP Headers", Verdict: valid,
		RFCSays: "valid and well formed",
		Want:    []int{481}, Why: whyInDialog},
	{RFC: 5118, File: "mult-ip-in-sdp", Section: "4.8 Multiple IP Addresses in SDP", Verdict: valid,
		RFCSays: "valid and well formed",
		Want:    []int{404}, Dialer: []int{484}, Why: whyUICUnknown},
	{RFC: 5118, File: "ipv4-mapped-ipv6", Section: "4.9 IPv4-Mapped IPv6 Addresses", Verdict: valid,
		RFCSays: "well formed; must be parsed",
		Want:    []int{404}, Dialer: []int{484}, Why: whyUICUnknown},
	{RFC: 5118, File: "ipv6-bug-abnf-3-colons", Section: "4.10 IPv6 Reference Bug in RFC 3261 ABNF", Verdict: tolerated,
		RFCSays: "an implementation must tolerate the extra colon",
		Want:    []int{200}},
	{RFC: 5118, File: "ipv6-correct-abnf-2-colons", Section: "4.10 IPv6 Reference Bug in RFC 3261 ABNF", Verdict: valid,
		RFCSays: "correct syntax",
		Want:    []int{200}},
}
