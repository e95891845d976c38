package sip

import (
	"github.com/wagate/wagate/configs"
)

// Retarget points d's B-leg at user at endpoint ep (a call flow's
// connect): its Request-URI, To and forced next hop, as a route to that
// extension would have them.
func (d *Decision) Retarget(ep *configs.Endpoint, user string) {
	d.BEP = ep
	d.Target, d.Dest = endpointURI(ep, user)
	d.BTo = d.Target
	d.BTo.UriParams = nil
}
