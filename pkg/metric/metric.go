// Package metric holds the names of edged's Prometheus metrics and of
// their labels, shared by edged, which serves them, and edgectl, which
// reads them (status, doctor): a name changed here changes on both sides,
// where a string written twice would leave edgectl reading nothing.
//
// The README's metrics table says what each one measures.
package metric

// The metrics edged serves on [metrics] listen, with their labels.
const (
	RequestsTotal          = "edged_requests_total"           // class, method, kind, site
	RequestDurationSeconds = "edged_request_duration_seconds" // histogram; kind, site
	QueueWaitSeconds       = "edged_queue_wait_seconds"       // histogram
	AppDurationSeconds     = "edged_app_duration_seconds"     // histogram; route
	AppWallSecondsTotal    = "edged_app_wall_seconds_total"   // route
	AppCPUSecondsTotal     = "edged_app_cpu_seconds_total"    // route
	AppJSONSecondsTotal    = "edged_app_json_seconds_total"   // route
	RejectedTotal          = "edged_rejected_total"           // limit
	ReceivedBodyBytesTotal = "edged_received_body_bytes_total"
	SentBodyBytesTotal     = "edged_sent_body_bytes_total"
	SpillsTotal            = "edged_spills_total" // what
	StreamedTotal          = "edged_streamed_total"
	StreamedSecondsTotal   = "edged_streamed_seconds_total"
	TLSHandshakesTotal     = "edged_tls_handshakes_total"      // result
	WorkerRequestsTotal    = "edged_worker_requests_total"     // worker
	WorkerBusySecondsTotal = "edged_worker_busy_seconds_total" // worker
	WorkerRSSBytes         = "edged_worker_rss_bytes"          // gauge; worker
	WorkerRestartsTotal    = "edged_worker_restarts_total"     // worker
	ListenQueue            = "edged_listen_queue"              // gauge; socket
	ListenBacklog          = "edged_listen_backlog"            // gauge; socket

	KernelListenOverflowsTotal = "edged_kernel_listen_overflows_total"
	KernelListenDropsTotal     = "edged_kernel_listen_drops_total"
	InFlightRequests           = "edged_in_flight_requests"        // gauge
	WorkerInFlightRequests     = "edged_worker_in_flight_requests" // gauge
	AbandonedRequests          = "edged_abandoned_requests"        // gauge

	Websockets             = "edged_websockets"               // gauge; site
	WebsocketMessagesTotal = "edged_websocket_messages_total" // site, direction
	WebsocketBytesTotal    = "edged_websocket_bytes_total"    // site, direction
	WebsocketsClosedTotal  = "edged_websockets_closed_total"  // site, code

	WorkerAppKeyInfo = "edged_worker_app_key_info" // gauge; worker, source, weak, django_unsafe, fingerprint

	BuildInfo = "edged_build_info" // gauge; version, config_hash, draining

	CertificateExpirySeconds = "edged_certificate_expiry_seconds" // gauge; name, source
	CertificateRenewalsTotal = "edged_certificate_renewals_total" // result, order
)

// The labels of those metrics.
const (
	LabelClass        = "class"         // status class: "2xx", "5xx"...
	LabelMethod       = "method"        // request method
	LabelKind         = "kind"          // who answered: "static", "app", "edge"
	LabelSite         = "site"          // the site that took the request; "" when none did
	LabelRoute        = "route"         // the path, id-like segments folded
	LabelLimit        = "limit"         // the limit that turned a request away, in the config's terms
	LabelWhat         = "what"          // "request" or "response" body
	LabelResult       = "result"        // "ok" or "failed"
	LabelWorker       = "worker"        // the worker's instance number
	LabelSocket       = "socket"        // a listening socket: "http 0.0.0.0:80", "workers /run/..."
	LabelDirection    = "direction"     // "in" (from clients) or "out" (to them)
	LabelCode         = "code"          // a WebSocket's close code
	LabelName         = "name"          // a certificate's first name
	LabelSource       = "source"        // where a certificate came from: "file", "acme", "self-signed"
	LabelOrder        = "order"         // an ACME order: "new" (a first certificate) or "renewal"
	LabelWeak         = "weak"          // "true" or "false"
	LabelDjangoUnsafe = "django_unsafe" // "true" or "false"
	LabelFingerprint  = "fingerprint"   // 10 bits of a keyed hash, in hex
	LabelVersion      = "version"       // the build: its commit, or its module version
	LabelConfigHash   = "config_hash"   // config.Config.Hash: what must match across hosts
	LabelDraining     = "draining"      // "true" or "false"
)
