package edge

// limit is what turned a request away, as edged_rejected_total's "limit"
// label names it: the config key of the limit, or "protocol" for a
// request that broke HTTP's rules. It goes with the refusal from where
// it was decided, never read back out of the reason's text. The zero
// limit is no refusal (a 502, say, or a 404).
type limit string

const (
	limitMaxBody        limit = "limits.max_body"
	limitHeaderTimeout  limit = "limits.header_timeout"
	limitBodyTimeout    limit = "limits.body_timeout"
	limitMaxHeader      limit = "limits.max_header"
	limitRate           limit = "limits.rate"
	limitConnsPerClient limit = "limits.connections_per_client"
	limitQueueLength    limit = "limits.queue_length"
	limitQueueTimeout   limit = "limits.queue_timeout"
	limitAppTimeout     limit = "app.timeout"
	limitProtocol       limit = "protocol"
	// The rules of a site's [[site.path]]: its rate and max_body, its
	// allow/deny lists (403), its basic authentication (401); and https =
	// "only" (403).
	limitPathRate    limit = "site.path.rate"
	limitPathMaxBody limit = "site.path.max_body"
	limitPathAccess  limit = "site.path.allow"
	limitPathAuth    limit = "site.path.auth_basic"
	limitHTTPSOnly   limit = "site.https"
	// A PROXY protocol header from a client, or none from a balancer.
	limitProxyProtocol limit = "listen.proxy_protocol"
)

// limits are every limit, for the metrics to show each from the start.
var limits = []limit{limitMaxBody, limitHeaderTimeout, limitBodyTimeout, limitMaxHeader, limitRate,
	limitConnsPerClient, limitQueueLength, limitQueueTimeout, limitAppTimeout, limitProtocol,
	limitPathRate, limitPathMaxBody, limitPathAccess, limitPathAuth, limitHTTPSOnly, limitProxyProtocol}
