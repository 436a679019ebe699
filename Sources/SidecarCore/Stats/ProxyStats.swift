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
    /// Slot of the first of `knownCodes`' `upstream_rq_<code>`; code c is at rqCode + codeIndex[c - 100].
    public let rqCode: Int
    /// Histogram slots: `upstream_rq_time` (request sent upstream to response complete), `upstream_cx_connect_ms`
    /// (connect started to established, TLS handshake included) and `upstream_cx_length_ms` (connect started to
    /// closed, for connections that were established).
    public let rqTime, cxConnectMs, cxLengthMs: Int

    /// The fixed stats of every cluster, registered as one run (see `SlotLayout`), in slot order.
    static let fixed: [(suffix: String, kind: StatsRegistry.Kind)] = [
        ("upstream_cx_total", .counter), ("upstream_cx_active", .gauge), ("upstream_cx_connect_fail", .counter),
        ("upstream_cx_connect_timeout", .counter), ("upstream_cx_destroy", .counter), ("upstream_rq_total", .counter),
        ("upstream_rq_active", .gauge), ("upstream_rq_timeout", .counter), ("upstream_rq_pending_total", .counter),
        ("upstream_rq_pending_active", .gauge), ("membership_total", .gauge), ("membership_healthy", .gauge),
        ("upstream_cx_rx_bytes_total", .counter), ("upstream_cx_tx_bytes_total", .counter),
        ("upstream_cx_none_healthy", .counter), ("upstream_cx_overflow", .counter),
        ("upstream_rq_pending_overflow", .counter), ("upstream_rq_active_overflow", .counter),
        ("upstream_rq_completed", .counter), ("upstream_rq_retry_overflow", .counter), ("upstream_rq_retry", .counter),
        ("upstream_rq_retry_success", .counter), ("upstream_rq_retry_limit_exceeded", .counter),
        ("upstream_rq_retry_backoff_exponential", .counter), ("upstream_rq_per_try_timeout", .counter),
        ("upstream_rq_per_try_idle_timeout", .counter), ("upstream_rq_rx_reset", .counter),
        ("upstream_rq_tx_reset", .counter), ("upstream_rq_max_duration_reached", .counter),
        ("upstream_cx_max_duration_reached", .counter), ("upstream_cx_idle_timeout", .counter),
        ("lb_healthy_panic", .counter), ("upstream_cx_http1_total", .counter), ("upstream_cx_http2_total", .counter),
        ("upstream_cx_max_requests", .counter),
    ]
    static let fixedLayout = SlotLayout(stats: fixed, familyPrefix: "cluster.")
    static let classLayout = SlotLayout(numbers: Array(1...5), namePrefix: "upstream_rq_", nameSuffix: "xx",
                                       family: "cluster.upstream_rq_xx", labelName: "envoy_response_code_class")
    static let codeLayout = SlotLayout(numbers: knownCodes, namePrefix: "upstream_rq_", family: "cluster.upstream_rq",
                                      labelName: "envoy_response_code")

    package init(cluster: String, registry r: StatsRegistry) {
        let label = [("envoy_cluster_name", cluster)]
        let prefix = "cluster.\(cluster)."
        let first = r.register(Self.fixedLayout, prefix: prefix, labels: label)
        func slot(_ suffix: String) -> Int { first + Self.fixed.firstIndex { $0.suffix == suffix }! }
        cxTotal = slot("upstream_cx_total")
        cxActive = slot("upstream_cx_active")
        cxConnectFail = slot("upstream_cx_connect_fail")
        cxConnectTimeout = slot("upstream_cx_connect_timeout")
        cxDestroy = slot("upstream_cx_destroy")
        rqTotal = slot("upstream_rq_total")
        rqActive = slot("upstream_rq_active")
        rqTimeout = slot("upstream_rq_timeout")
        rqPendingTotal = slot("upstream_rq_pending_total")
        rqPendingActive = slot("upstream_rq_pending_active")
        membershipTotal = slot("membership_total")
        membershipHealthy = slot("membership_healthy")
        cxRxBytes = slot("upstream_cx_rx_bytes_total")
        cxTxBytes = slot("upstream_cx_tx_bytes_total")
        cxNoneHealthy = slot("upstream_cx_none_healthy")
        cxOverflow = slot("upstream_cx_overflow")
        rqPendingOverflow = slot("upstream_rq_pending_overflow")
        rqActiveOverflow = slot("upstream_rq_active_overflow")
        rqCompleted = slot("upstream_rq_completed")
        rqRetryOverflow = slot("upstream_rq_retry_overflow")
        rqRetry = slot("upstream_rq_retry")
        rqRetrySuccess = slot("upstream_rq_retry_success")
        rqRetryLimitExceeded = slot("upstream_rq_retry_limit_exceeded")
        rqRetryBackoffExponential = slot("upstream_rq_retry_backoff_exponential")
        rqPerTryTimeout = slot("upstream_rq_per_try_timeout")
        rqPerTryIdleTimeout = slot("upstream_rq_per_try_idle_timeout")
        rqRxReset = slot("upstream_rq_rx_reset")
        rqTxReset = slot("upstream_rq_tx_reset")
        rqMaxDurationReached = slot("upstream_rq_max_duration_reached")
        cxMaxDurationReached = slot("upstream_cx_max_duration_reached")
        cxIdleTimeout = slot("upstream_cx_idle_timeout")
        lbHealthyPanic = slot("lb_healthy_panic")
        cxHTTP1Total = slot("upstream_cx_http1_total")
        cxHTTP2Total = slot("upstream_cx_http2_total")
        cxMaxRequests = slot("upstream_cx_max_requests")
        rqXX = r.register(Self.classLayout, prefix: prefix, labels: label)
        rqCode = r.register(Self.codeLayout, prefix: prefix, labels: label)
        func hist(_ s: String, lazy: Bool = false) -> Int {
            r.registerHistogram("cluster.\(cluster).\(s)", family: "cluster.\(s)", labels: label, lazy: lazy)
        }
        rqTime = hist("upstream_rq_time", lazy: true)
        cxConnectMs = hist("upstream_cx_connect_ms")
        cxLengthMs = hist("upstream_cx_length_ms")
    }

    package func responseClass(_ status: Int) -> Int { rqXX + min(max(status / 100, 1), 5) - 1 }
    /// The slot of `upstream_rq_<status>`; nil for a code outside `knownCodes` (see `countCode`).
    package func code(_ status: Int) -> Int? {
        guard (100...599).contains(status) else { return nil }
        let i = Self.codeIndex[status - 100]
        return i < 0 ? nil : rqCode + Int(i)
    }

    /// Counts `upstream_rq_<status>` for the cluster named `cluster`: in its slot, or, for a code without one (499,
    /// 520…), by name as Envoy creates it on first use.
    package func countCode(_ status: Int, cluster: @autoclosure () -> String, in stats: WorkerStats,
                           dynamic: DynamicStats) {
        if let slot = code(status) {
            stats.inc(slot)
        } else if (100...599).contains(status) {
            let name = cluster()
            dynamic.add("cluster.\(name).upstream_rq_\(status)", family: "cluster.upstream_rq",
                        labels: [("envoy_response_code", "\(status)"), ("envoy_cluster_name", name)])
        }
    }

    /// The codes with a slot of their own in every cluster: those registered with IANA (RFC 9110 and later). A
    /// slot per possible code (500) was most of a cluster's stats memory.
    package static let knownCodes: [Int] = Array(100...103) + Array(200...208) + [226] + Array(300...308)
        + Array(400...418) + Array(421...426) + [428, 429, 431, 451] + Array(500...508) + [510, 511]

    /// `knownCodes`' index by code - 100, -1 for the others.
    static let codeIndex: [Int8] = {
        var index = [Int8](repeating: -1, count: 500)
        for (i, c) in knownCodes.enumerated() { index[c - 100] = Int8(i) }
        return index
    }()
}
