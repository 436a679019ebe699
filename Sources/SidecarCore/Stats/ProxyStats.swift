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
    /// The slot of the first of the cluster's fixed stats (`fixed`, in order): each is at a constant offset from
    /// it, so the struct is a few integers (every cluster has one, and every worker's pool a copy).
    public let first: Int
    @inlinable public var cxTotal: Int { first &+ 0 }  // upstream_cx_total
    @inlinable public var cxActive: Int { first &+ 1 }  // upstream_cx_active
    @inlinable public var cxConnectFail: Int { first &+ 2 }  // upstream_cx_connect_fail
    @inlinable public var cxConnectTimeout: Int { first &+ 3 }  // upstream_cx_connect_timeout
    @inlinable public var cxDestroy: Int { first &+ 4 }  // upstream_cx_destroy
    @inlinable public var rqTotal: Int { first &+ 5 }  // upstream_rq_total
    @inlinable public var rqActive: Int { first &+ 6 }  // upstream_rq_active
    @inlinable public var rqTimeout: Int { first &+ 7 }  // upstream_rq_timeout
    @inlinable public var rqPendingTotal: Int { first &+ 8 }  // upstream_rq_pending_total
    @inlinable public var rqPendingActive: Int { first &+ 9 }  // upstream_rq_pending_active
    @inlinable public var membershipTotal: Int { first &+ 10 }  // membership_total
    @inlinable public var membershipHealthy: Int { first &+ 11 }  // membership_healthy
    @inlinable public var cxRxBytes: Int { first &+ 12 }  // upstream_cx_rx_bytes_total
    @inlinable public var cxTxBytes: Int { first &+ 13 }  // upstream_cx_tx_bytes_total
    @inlinable public var cxNoneHealthy: Int { first &+ 14 }  // upstream_cx_none_healthy
    @inlinable public var cxOverflow: Int { first &+ 15 }  // upstream_cx_overflow
    @inlinable public var rqPendingOverflow: Int { first &+ 16 }  // upstream_rq_pending_overflow
    @inlinable public var rqActiveOverflow: Int { first &+ 17 }  // upstream_rq_active_overflow
    @inlinable public var rqCompleted: Int { first &+ 18 }  // upstream_rq_completed
    @inlinable public var rqRetryOverflow: Int { first &+ 19 }  // upstream_rq_retry_overflow
    @inlinable public var rqRetry: Int { first &+ 20 }  // upstream_rq_retry
    @inlinable public var rqRetrySuccess: Int { first &+ 21 }  // upstream_rq_retry_success
    @inlinable public var rqRetryLimitExceeded: Int { first &+ 22 }  // upstream_rq_retry_limit_exceeded
    @inlinable public var rqRetryBackoffExponential: Int { first &+ 23 }  // upstream_rq_retry_backoff_exponential
    @inlinable public var rqPerTryTimeout: Int { first &+ 24 }  // upstream_rq_per_try_timeout
    @inlinable public var rqPerTryIdleTimeout: Int { first &+ 25 }  // upstream_rq_per_try_idle_timeout
    @inlinable public var rqRxReset: Int { first &+ 26 }  // upstream_rq_rx_reset
    @inlinable public var rqTxReset: Int { first &+ 27 }  // upstream_rq_tx_reset
    @inlinable public var rqMaxDurationReached: Int { first &+ 28 }  // upstream_rq_max_duration_reached
    @inlinable public var cxMaxDurationReached: Int { first &+ 29 }  // upstream_cx_max_duration_reached
    @inlinable public var cxIdleTimeout: Int { first &+ 30 }  // upstream_cx_idle_timeout
    @inlinable public var lbHealthyPanic: Int { first &+ 31 }  // lb_healthy_panic
    @inlinable public var cxHTTP1Total: Int { first &+ 32 }  // upstream_cx_http1_total
    @inlinable public var cxHTTP2Total: Int { first &+ 33 }  // upstream_cx_http2_total
    @inlinable public var cxMaxRequests: Int { first &+ 34 }  // upstream_cx_max_requests
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
        self.first = first
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
