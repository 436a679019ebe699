/// `http.<stat_prefix>.*` slots of one connection manager.
public struct HTTPStats: Sendable {
    public let rqTotal, rqActive, cxTotal, cxActive, noRoute, directResponse: Int
    public let rqXX: Int  // first of downstream_rq_1xx ... 5xx
    public let cxDestroy, rqTimeout, rqHeaderTimeout, cxProtocolError: Int
    /// `downstream_rq_idle_timeout`: requests ended by stream_idle_timeout / route idle_timeout.
    public let rqIdleTimeout: Int
    /// `downstream_cx_idle_timeout` / `downstream_cx_max_duration_reached`: connections closed by the connection
    /// manager's common_http_protocol_options.
    public let cxIdleTimeout, cxMaxDurationReached: Int
    /// Histogram slots: `downstream_rq_time` (request head to response complete, or to the stream's end when it
    /// is reset) and `downstream_cx_length_ms` (accepted to closed).
    public let rqTime, cxLengthMs: Int
    /// Per codec: `downstream_cx_http1_total` / `_active`, `downstream_cx_http2_total` / `_active`,
    /// `downstream_rq_http1_total`, `downstream_rq_http2_total`.
    public let cxHTTP1Total, cxHTTP1Active, cxHTTP2Total, cxHTTP2Active, rqHTTP1Total, rqHTTP2Total: Int
    /// `downstream_rq_rx_reset` / `downstream_rq_tx_reset`: HTTP/2 streams the client reset, and the proxy reset.
    public let rqRxReset, rqTxReset: Int

    package init(prefix: String, registry r: StatsRegistry) {
        let label = ("envoy_http_conn_manager_prefix", prefix)
        func reg(_ s: String, _ k: StatsRegistry.Kind) -> Int {
            r.register("http.\(prefix).\(s)", k, family: "http.\(s)", labels: [label])
        }
        rqTotal = reg("downstream_rq_total", .counter)
        rqActive = reg("downstream_rq_active", .gauge)
        cxTotal = reg("downstream_cx_total", .counter)
        cxActive = reg("downstream_cx_active", .gauge)
        noRoute = reg("no_route", .counter)
        directResponse = reg("rq_direct_response", .counter)
        rqXX = r.register("http.\(prefix).downstream_rq_1xx", .counter, family: "http.downstream_rq_xx",
                          labels: [("envoy_response_code_class", "1"), label])
        for c in 2...5 {
            r.register("http.\(prefix).downstream_rq_\(c)xx", .counter, family: "http.downstream_rq_xx",
                       labels: [("envoy_response_code_class", "\(c)"), label])
        }
        cxDestroy = reg("downstream_cx_destroy", .counter)
        rqTimeout = reg("downstream_rq_timeout", .counter)
        rqHeaderTimeout = reg("downstream_rq_header_timeout", .counter)
        cxProtocolError = reg("downstream_cx_protocol_error", .counter)
        rqIdleTimeout = reg("downstream_rq_idle_timeout", .counter)
        cxIdleTimeout = reg("downstream_cx_idle_timeout", .counter)
        cxMaxDurationReached = reg("downstream_cx_max_duration_reached", .counter)
        cxHTTP1Total = reg("downstream_cx_http1_total", .counter)
        cxHTTP1Active = reg("downstream_cx_http1_active", .gauge)
        cxHTTP2Total = reg("downstream_cx_http2_total", .counter)
        cxHTTP2Active = reg("downstream_cx_http2_active", .gauge)
        rqHTTP1Total = reg("downstream_rq_http1_total", .counter)
        rqHTTP2Total = reg("downstream_rq_http2_total", .counter)
        rqRxReset = reg("downstream_rq_rx_reset", .counter)
        rqTxReset = reg("downstream_rq_tx_reset", .counter)
        rqTime = r.registerHistogram("http.\(prefix).downstream_rq_time", family: "http.downstream_rq_time", labels: [label])
        cxLengthMs = r.registerHistogram("http.\(prefix).downstream_cx_length_ms", family: "http.downstream_cx_length_ms",
                                         labels: [label])
    }

    package func responseClass(_ status: Int) -> Int { rqXX + min(max(status / 100, 1), 5) - 1 }
}

/// `cluster.<name>.*` slots of one cluster.
public struct ClusterStats: Sendable {
    public let cxTotal, cxActive, cxConnectFail, cxConnectTimeout, cxDestroy: Int
    public let rqTotal, rqActive, rqTimeout, rqPendingTotal, rqPendingActive: Int
    public let membershipTotal, membershipHealthy: Int
    public let cxRxBytes, cxTxBytes, cxNoneHealthy: Int
    /// Circuit-breaker overflows; which breaker feeds which counter is noted on `ClusterResources`.
    public let cxOverflow, rqPendingOverflow, rqActiveOverflow, rqRetryOverflow: Int
    /// `RetryState` decisions: see its doc comment for when each is counted.
    public let rqRetry, rqRetrySuccess, rqRetryLimitExceeded, rqRetryBackoffExponential: Int
    public let rqPerTryTimeout, rqPerTryIdleTimeout, rqRxReset, rqTxReset, rqMaxDurationReached: Int
    public let cxMaxDurationReached, cxIdleTimeout, lbHealthyPanic: Int
    /// `upstream_cx_http1_total`, `upstream_cx_http2_total`, `upstream_cx_max_requests`.
    public let cxHTTP1Total, cxHTTP2Total, cxMaxRequests: Int
    /// `upstream_rq_completed`: every upstream answer charged to the cluster, local overflow replies included.
    public let rqCompleted: Int
    public let rqXX: Int  // first of upstream_rq_1xx ... 5xx
    public let rqCode: Int  // slot of upstream_rq_100; code c is at rqCode + c - 100
    /// Histogram slots: `upstream_rq_time` (request sent upstream to response complete), `upstream_cx_connect_ms`
    /// (connect started to established, TLS handshake included) and `upstream_cx_length_ms` (connect started to
    /// closed, for connections that were established).
    public let rqTime, cxConnectMs, cxLengthMs: Int

    package init(cluster: String, registry r: StatsRegistry) {
        let label = ("envoy_cluster_name", cluster)
        func reg(_ s: String, _ k: StatsRegistry.Kind) -> Int {
            r.register("cluster.\(cluster).\(s)", k, family: "cluster.\(s)", labels: [label])
        }
        cxTotal = reg("upstream_cx_total", .counter)
        cxActive = reg("upstream_cx_active", .gauge)
        cxConnectFail = reg("upstream_cx_connect_fail", .counter)
        cxConnectTimeout = reg("upstream_cx_connect_timeout", .counter)
        cxDestroy = reg("upstream_cx_destroy", .counter)
        rqTotal = reg("upstream_rq_total", .counter)
        rqActive = reg("upstream_rq_active", .gauge)
        rqTimeout = reg("upstream_rq_timeout", .counter)
        rqPendingTotal = reg("upstream_rq_pending_total", .counter)
        rqPendingActive = reg("upstream_rq_pending_active", .gauge)
        membershipTotal = reg("membership_total", .gauge)
        membershipHealthy = reg("membership_healthy", .gauge)
        cxRxBytes = reg("upstream_cx_rx_bytes_total", .counter)
        cxTxBytes = reg("upstream_cx_tx_bytes_total", .counter)
        cxNoneHealthy = reg("upstream_cx_none_healthy", .counter)
        cxOverflow = reg("upstream_cx_overflow", .counter)
        rqPendingOverflow = reg("upstream_rq_pending_overflow", .counter)
        rqActiveOverflow = reg("upstream_rq_active_overflow", .counter)
        rqCompleted = reg("upstream_rq_completed", .counter)
        rqRetryOverflow = reg("upstream_rq_retry_overflow", .counter)
        rqRetry = reg("upstream_rq_retry", .counter)
        rqRetrySuccess = reg("upstream_rq_retry_success", .counter)
        rqRetryLimitExceeded = reg("upstream_rq_retry_limit_exceeded", .counter)
        rqRetryBackoffExponential = reg("upstream_rq_retry_backoff_exponential", .counter)
        rqPerTryTimeout = reg("upstream_rq_per_try_timeout", .counter)
        rqPerTryIdleTimeout = reg("upstream_rq_per_try_idle_timeout", .counter)
        rqRxReset = reg("upstream_rq_rx_reset", .counter)
        rqTxReset = reg("upstream_rq_tx_reset", .counter)
        rqMaxDurationReached = reg("upstream_rq_max_duration_reached", .counter)
        cxMaxDurationReached = reg("upstream_cx_max_duration_reached", .counter)
        cxIdleTimeout = reg("upstream_cx_idle_timeout", .counter)
        lbHealthyPanic = reg("lb_healthy_panic", .counter)
        cxHTTP1Total = reg("upstream_cx_http1_total", .counter)
        cxHTTP2Total = reg("upstream_cx_http2_total", .counter)
        cxMaxRequests = reg("upstream_cx_max_requests", .counter)
        rqXX = r.register("cluster.\(cluster).upstream_rq_1xx", .counter, family: "cluster.upstream_rq_xx",
                          labels: [("envoy_response_code_class", "1"), label], lazy: true)
        for c in 2...5 {
            r.register("cluster.\(cluster).upstream_rq_\(c)xx", .counter, family: "cluster.upstream_rq_xx",
                       labels: [("envoy_response_code_class", "\(c)"), label], lazy: true)
        }
        rqCode = r.registerRange("cluster.\(cluster).upstream_rq_", 100...599, family: "cluster.upstream_rq",
                                 labelName: "envoy_response_code", labels: [label])
        func hist(_ s: String, lazy: Bool = false) -> Int {
            r.registerHistogram("cluster.\(cluster).\(s)", family: "cluster.\(s)", labels: [label], lazy: lazy)
        }
        rqTime = hist("upstream_rq_time", lazy: true)
        cxConnectMs = hist("upstream_cx_connect_ms")
        cxLengthMs = hist("upstream_cx_length_ms")
    }

    package func responseClass(_ status: Int) -> Int { rqXX + min(max(status / 100, 1), 5) - 1 }
    package func code(_ status: Int) -> Int? { (100...599).contains(status) ? rqCode + status - 100 : nil }
}
