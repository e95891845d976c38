package configs

import (
	"net/netip"
	"slices"
	"strings"
)

// index holds the lookup tables built once per loaded Config, so that the
// per-request lookups on the SIP path do no parsing and no allocation.
type index struct {
	endpoints map[string]*Endpoint
	byE164    map[string]*Number // key: digits without '+'
	byID      map[string]*Number
	hunts     map[string]*HuntList
	// sources lists every source prefix, most specific first, so the first
	// match is the answer. Configs have a handful of prefixes; a linear scan
	// beats a trie at that size.
	sources []source
}

type source struct {
	prefix   netip.Prefix
	endpoint *Endpoint
}

// buildIndex points into c's slices; c must not be appended to afterwards
// without calling Reindex.
func buildIndex(c *Config) *index {
	x := &index{
		endpoints: make(map[string]*Endpoint, len(c.Endpoints)),
		byE164:    make(map[string]*Number, len(c.Numbers)),
		byID:      make(map[string]*Number, len(c.Numbers)),
		hunts:     make(map[string]*HuntList, len(c.HuntLists)),
	}
	for i := range c.HuntLists {
		if h := &c.HuntLists[i]; x.hunts[h.Name] == nil {
			x.hunts[h.Name] = h
		}
	}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		if _, dup := x.endpoints[e.Name]; !dup {
			x.endpoints[e.Name] = e
		}
		for _, p := range e.sourcePrefixes() {
			x.sources = append(x.sources, source{prefix: p, endpoint: e})
		}
	}
	// Stable, so that between equal prefixes (possible only in a Config
	// built in code) the endpoint listed first wins, as documented.
	slices.SortStableFunc(x.sources, func(a, b source) int { return b.prefix.Bits() - a.prefix.Bits() })
	for i := range c.Numbers {
		n := &c.Numbers[i]
		if k := strings.TrimPrefix(n.Number, "+"); k != "" {
			if _, dup := x.byE164[k]; !dup {
				x.byE164[k] = n
			}
		}
		if n.PhoneNumberID != "" {
			if _, dup := x.byID[n.PhoneNumberID]; !dup {
				x.byID[n.PhoneNumberID] = n
			}
		}
	}
	return x
}

// Reindex rebuilds the lookup tables. Load and Parse build them; call
// Reindex only after changing Endpoints or Numbers in code (tests, mostly).
// It must not run concurrently with lookups.
func (c *Config) Reindex() { c.idx = buildIndex(c) }

// lookups returns the index, building a throwaway one for a Config that was
// assembled in code and never indexed, so that lookups are still correct.
func (c *Config) lookups() *index {
	if c.idx != nil {
		return c.idx
	}
	return buildIndex(c)
}

// Endpoint returns the endpoint called name, or nil.
func (c *Config) Endpoint(name string) *Endpoint {
	return c.lookups().endpoints[name]
}

// EndpointForSource returns the endpoint a request from ip belongs to: the
// one with the most specific source prefix containing ip, or nil when no
// endpoint admits ip. IPv4-mapped IPv6 addresses match IPv4 prefixes.
func (c *Config) EndpointForSource(ip netip.Addr) *Endpoint {
	ip = ip.Unmap().WithZone("")
	for _, s := range c.lookups().sources {
		if s.prefix.Contains(ip) {
			return s.endpoint
		}
	}
	return nil
}

// NumberByE164 returns the business number s, written with or without the
// leading '+', or nil.
func (c *Config) NumberByE164(s string) *Number {
	return c.lookups().byE164[strings.TrimPrefix(s, "+")]
}

// NumberByPhoneNumberID returns the business number with Meta's
// phone_number_id id, or nil.
func (c *Config) NumberByPhoneNumberID(id string) *Number {
	return c.lookups().byID[id]
}

// HasSource reports whether ip is inside one of e's source prefixes
// (source_cidrs and proxy_cidrs), as EndpointForSource would match it
// (ignoring more specific prefixes of other endpoints).
func (e *Endpoint) HasSource(ip netip.Addr) bool {
	return containsAddr(e.sourcePrefixes(), ip)
}

// HasProxy reports whether ip is inside one of e's proxy_cidrs.
func (e *Endpoint) HasProxy(ip netip.Addr) bool {
	prefixes := e.ProxyPrefixes
	if len(prefixes) == 0 {
		prefixes = parsePrefixes(nil, e.ProxyCIDRs)
	}
	return containsAddr(prefixes, ip)
}

// TLSOnly reports an endpoint whose own requests come over TLS only: a
// whatsapp endpoint on transport tls (Meta signals over TLS only). What
// comes over UDP or TCP from its addresses is Meta's only when a proxy in
// its proxy_cidrs forwards it.
func (e *Endpoint) TLSOnly() bool {
	return e.Kind == KindWhatsApp && strings.EqualFold(e.Transport, "tls")
}

// sourcePrefixes returns e's source and proxy prefixes, parsing them for
// an Endpoint built in code that has not been through Parse.
func (e *Endpoint) sourcePrefixes() []netip.Prefix {
	if len(e.Prefixes) > 0 {
		return e.Prefixes
	}
	return parsePrefixes(parsePrefixes(nil, e.SourceCIDRs), e.ProxyCIDRs)
}

// parsePrefixes appends the prefixes among cidrs that parse to dst.
func parsePrefixes(dst []netip.Prefix, cidrs []string) []netip.Prefix {
	for _, s := range cidrs {
		if p, ok := parsePrefix(s); ok {
			dst = append(dst, p)
		}
	}
	return dst
}

func containsAddr(prefixes []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
