import NIOHTTP1
import SidecarCore

/// `envoy.extensions.filters.http.fault.v3.HTTPFault`, as the fault filter and its per-route override use it. A
/// class, read through a reference on every request; written only while it is decoded.
final class FaultConfig: @unchecked Sendable {
    enum Delay: Sendable {
        case fixed(milliseconds: UInt64)
        /// `header_delay`: the duration comes from `x-envoy-fault-delay-request`.
        case header
    }

    enum Abort: Sendable {
        case http(Int)
        case grpc(Int)
        /// `header_abort`: `x-envoy-fault-abort-request` (HTTP) or `x-envoy-fault-abort-grpc-request`.
        case header
    }

    var delay: Delay?
    var delayPercentage = FractionalPercent.zero
    var abort: Abort?
    var abortPercentage = FractionalPercent.zero
    var upstreamCluster: String?
    var headers: [HeaderMatcher] = []
    var maxActiveFaults: Int?
    var disableDownstreamClusterStats = false

    static let delayHeader = "x-envoy-fault-delay-request"
    static let delayPercentageHeader = "x-envoy-fault-delay-request-percentage"
    static let abortHeader = "x-envoy-fault-abort-request"
    static let abortGRPCHeader = "x-envoy-fault-abort-grpc-request"
    static let abortPercentageHeader = "x-envoy-fault-abort-request-percentage"

    /// Whether the request is one the faults target: `headers` and `upstream_cluster`.
    func applies(to stream: HTTPFilterStream) -> Bool {
        if let upstreamCluster {
            guard case .forward(let target) = stream.route, target.cluster == upstreamCluster else { return false }
        }
        for h in headers where !h.matches(stream.request.header) { return false }
        return true
    }

    /// The delay to inject (ms), or nil. `random` draws the percentage.
    func delayDuration(_ requestHeaders: HTTPHeaders, random: UInt64) -> UInt64? {
        guard let delay else { return nil }
        let duration: UInt64
        switch delay {
        case .fixed(let ms):
            guard delayPercentage.evaluate(random) else { return nil }
            duration = ms
        case .header:
            guard let v = requestHeaders.first(name: Self.delayHeader), let ms = UInt64(v), ms > 0 else { return nil }
            guard Self.headerPercentage(requestHeaders, Self.delayPercentageHeader, delayPercentage).evaluate(random)
            else { return nil }
            duration = ms
        }
        return duration
    }

    enum AbortDecision { case http(Int), grpc(Int) }

    /// The abort to inject, or nil.
    func abort(_ requestHeaders: HTTPHeaders, random: UInt64, skipPercentage: Bool = false) -> AbortDecision? {
        guard let abort else { return nil }
        let decision: AbortDecision
        let percentage: FractionalPercent
        switch abort {
        case .http(let status):
            decision = .http(status)
            percentage = abortPercentage
        case .grpc(let code):
            decision = .grpc(code)
            percentage = abortPercentage
        case .header:
            if let v = requestHeaders.first(name: Self.abortHeader), let code = Int(v), code >= 200, code < 600 {
                decision = .http(code)
            } else if let v = requestHeaders.first(name: Self.abortGRPCHeader), let code = Int(v), code >= 0 {
                decision = .grpc(code)
            } else {
                return nil
            }
            percentage = Self.headerPercentage(requestHeaders, Self.abortPercentageHeader, abortPercentage)
        }
        if !skipPercentage && !percentage.evaluate(random) { return nil }
        return decision
    }

    /// Envoy's `HeaderPercentageProvider`: the request header's numerator, never above the configured one.
    static func headerPercentage(_ headers: HTTPHeaders, _ name: String, _ configured: FractionalPercent)
        -> FractionalPercent
    {
        guard let v = headers.first(name: name), let n = UInt32(v) else { return configured }
        return FractionalPercent(numerator: min(UInt64(n), configured.numerator), denominator: configured.denominator)
    }

    static func decode(_ obj: ConfigObject) throws -> FaultConfig {
        try obj.unsupported([
            "response_rate_limit", "downstream_nodes", "delay_percent_runtime", "abort_percent_runtime",
            "delay_duration_runtime", "abort_http_status_runtime", "max_active_faults_runtime",
            "response_rate_limit_percent_runtime", "abort_grpc_status_runtime",
            "filter_metadata",
        ])
        let c = FaultConfig()
        if let d = try obj.optional("delay")?.object() {
            guard let (key, v) = try d.oneOf(["fixed_delay", "header_delay"]) else { fatalError("unreachable") }
            if key == "fixed_delay" {
                let duration = try v.duration()
                if duration.isZero { throw v.error("fixed_delay must be greater than 0s") }
                c.delay = .fixed(milliseconds: UInt64(duration.milliseconds))
            } else {
                try v.object().finish()
                c.delay = .header
            }
            c.delayPercentage = try d.optional("percentage").map(FractionalPercent.decode) ?? .zero
            try d.finish()
        }
        if let a = try obj.optional("abort")?.object() {
            guard let (key, v) = try a.oneOf(["http_status", "grpc_status", "header_abort"]) else {
                fatalError("unreachable")
            }
            switch key {
            case "http_status": c.abort = .http(Int(try v.int(min: 200, max: 599)))
            case "grpc_status": c.abort = .grpc(Int(try v.uint32()))
            default:
                try v.object().finish()
                c.abort = .header
            }
            c.abortPercentage = try a.optional("percentage").map(FractionalPercent.decode) ?? .zero
            try a.finish()
        }
        c.upstreamCluster = try obj.optional("upstream_cluster")?.string()
        c.headers = try obj.list("headers").map(HeaderMatcher.decode)
        if let m = obj.optional("max_active_faults") { c.maxActiveFaults = Int(try m.uint32()) }
        c.disableDownstreamClusterStats = try obj.optional("disable_downstream_cluster_stats")?.bool() ?? false
        try obj.finish()
        return c
    }
}
