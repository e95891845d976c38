// Package callflow runs programmable call flows: an IVR driven by the
// business's own web service. When a call reaches a number whose route is a
// call flow, the engine POSTs a signed JSON request describing the call to
// the business's URL and runs the actions in the answer — say, playFile,
// sayAndCapture, makeCall/connect, record, hangup — in order. Digits
// captured are POSTed back and the answer is the next call flow. The JSON
// follows 8x8's Voice Call Action so existing integrations translate
// directly (docs/callflow.md).
//
// The engine knows a call only through the Call interface: play PCM, read
// the digits the caller presses, connect the caller somewhere, record, hang
// up. sip and media implement it; the tests here use a fake. Audio comes
// from the prompt package (speech and files, cached).
//
// Whatever goes wrong with the service — down, slow, an answer that is not
// a valid call flow, a prompt that cannot be rendered or fetched — the
// caller hears the configured message and the call goes to the fallback
// route: the dead air is bounded by the configured timeout, and a call is
// never left silent and open.
package callflow
