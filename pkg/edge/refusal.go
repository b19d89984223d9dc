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
)

// limits are every limit, for the metrics to show each from the start.
var limits = []limit{limitMaxBody, limitHeaderTimeout, limitBodyTimeout, limitMaxHeader, limitRate,
	limitConnsPerClient, limitQueueLength, limitQueueTimeout, limitAppTimeout, limitProtocol}
