import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.grpc_stats` (Envoy's grpc_stats_filter.cc): counts the gRPC calls to each cluster, in
/// `cluster.<route target cluster>.grpc.*`: `success`, `failure`, `total` and `<grpc-status>` (0 to 16, else
/// `other`) once the status is known (trailers, or the headers of a trailers-only answer; a call without one is
/// not charged), and `request_message_count` / `response_message_count` (the length-prefixed messages seen each
/// way). Methods in `individual_method_stats_allowlist` are counted under `grpc.<service>.<method>.*` instead;
/// the others under the generic names, as Envoy 1.40 does when `stats_for_all_methods` is unset or false.
///
/// Refused: `stats_for_all_methods: true` (a stat per method any client names: Pilotfish does not grow its stats on
/// request), `emit_filter_state: true`, `enable_upstream_stats: true`, `replace_dots_in_grpc_service_name: true`.
final class GRPCStatsFilter: HTTPStreamFilter {
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.grpc_stats",
        decode: { try GRPCStatsConfig.decode($0) },
        fields: [
            .init("envoy.extensions.filters.http.grpc_stats.v3.FilterConfig", type: typeURL, """
                emit_filter_state individual_method_stats_allowlist stats_for_all_methods enable_upstream_stats
                replace_dots_in_grpc_service_name
                """),
            .init("envoy.config.core.v3.GrpcMethodList", "services"),
            .init("envoy.config.core.v3.GrpcMethodList.Service", "name method_names"),
        ])

    private let config: GRPCStatsConfig
    private let dynamic: DynamicStats
    private var tracking = false
    private var cluster = ""
    /// `<service>.<method>.` for an allowlisted method, else empty.
    private var methodPrefix = ""
    private var charged = false
    private var requestFrames = GRPCFrameCounter()
    private var responseFrames = GRPCFrameCounter()

    init(config: GRPCStatsConfig, dynamic: DynamicStats) {
        self.config = config
        self.dynamic = dynamic
    }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        guard case .forward(let target) = stream.route, Self.isGRPC(head.headers.first(name: "content-type")) else {
            return .continue
        }
        tracking = true
        cluster = target.cluster
        // "/<service>/<method>"
        let parts = head.uri.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 3, parts[0].isEmpty, config.allowlist[String(parts[1])]?.contains(String(parts[2])) == true {
            methodPrefix = "\(parts[1]).\(parts[2])."
        }
        return .continue
    }

    func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        if tracking { requestFrames.consume(data.readableBytesView) }
        return .continue
    }

    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if tracking, let status = head.headers.first(name: "grpc-status") { charge(status, stream) }
        return .continue
    }

    func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        if tracking { responseFrames.consume(data.readableBytesView) }
        return .continue
    }

    func encodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        if tracking, let status = trailers.first(name: "grpc-status") { charge(status, stream) }
        return .continue
    }

    func onStreamComplete(stream: HTTPFilterStream) {
        guard tracking else { return }
        var entries: [(name: String, family: String, labels: [(String, String)], n: Int)] = []
        if requestFrames.messages > 0 { entries.append(entry("request_message_count", requestFrames.messages)) }
        if responseFrames.messages > 0 { entries.append(entry("response_message_count", responseFrames.messages)) }
        dynamic.add(entries)
        tracking = false
    }

    /// Envoy's `Grpc::ContextImpl::chargeStat`: once per call, from the first grpc-status seen.
    private func charge(_ status: String, _ stream: HTTPFilterStream) {
        guard !charged else { return }
        charged = true
        let code = (UInt8(status).map { $0 <= 16 } ?? false) ? status : "other"
        dynamic.add([
            entry(code, 1), entry(status == "0" ? "success" : "failure", 1), entry("total", 1),
        ])
    }

    private func entry(_ leaf: String, _ n: Int) -> (name: String, family: String, labels: [(String, String)], n: Int) {
        var labels = [("envoy_cluster_name", cluster)]
        if !methodPrefix.isEmpty {
            let sm = methodPrefix.dropLast().split(separator: ".", maxSplits: 1)
            labels.append(("envoy_grpc_bridge_service", String(sm.first ?? "")))
            labels.append(("envoy_grpc_bridge_method", String(sm.count > 1 ? sm[1] : "")))
        }
        return ("cluster.\(cluster).grpc.\(methodPrefix)\(leaf)", "cluster.grpc.\(leaf)", labels, n)
    }

    /// `content-type: application/grpc` or `application/grpc+…` (not gRPC-Web).
    static func isGRPC(_ contentType: String?) -> Bool {
        guard let ct = contentType else { return false }
        return ct == "application/grpc" || ct.hasPrefix("application/grpc+")
    }
}

/// Counts gRPC length-prefixed messages in a byte stream that arrives in pieces.
struct GRPCFrameCounter {
    private(set) var messages = 0
    /// Bytes of the current frame's 5-byte prefix seen so far, and its length once known.
    private var prefix: [UInt8] = []
    private var remaining = 0

    mutating func consume(_ bytes: ByteBufferView) {
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if remaining > 0 {
                let take = min(remaining, bytes.distance(from: i, to: bytes.endIndex))
                remaining -= take
                i = bytes.index(i, offsetBy: take)
                continue
            }
            prefix.append(bytes[i])
            i = bytes.index(after: i)
            if prefix.count == 5 {
                remaining = Int(prefix[1]) << 24 | Int(prefix[2]) << 16 | Int(prefix[3]) << 8 | Int(prefix[4])
                prefix.removeAll(keepingCapacity: true)
                messages += 1
            }
        }
    }
}

struct GRPCStatsConfig: HTTPFilterConfig {
    /// `individual_method_stats_allowlist`: service → methods.
    var allowlist: [String: Set<String>] = [:]

    static func decode(_ obj: ConfigObject) throws -> GRPCStatsConfig {
        for field in ["emit_filter_state", "enable_upstream_stats", "replace_dots_in_grpc_service_name"] {
            if let v = obj.optional(field), try v.bool() {
                throw v.error("\(field): true is a valid Envoy setting but Pilotfish does not support it yet")
            }
        }
        var config = GRPCStatsConfig()
        let all = obj.optional("stats_for_all_methods")
        let list = obj.optional("individual_method_stats_allowlist")
        if let all, list != nil {
            throw all.error("only one of individual_method_stats_allowlist and stats_for_all_methods may be set")
        }
        if let all, try all.bool() {
            throw all.error("stats_for_all_methods: true is a valid Envoy setting but Pilotfish does not support it "
                + "yet (it makes stats per method any client names); list the methods in individual_method_stats_allowlist")
        }
        if let list = try list?.object() {
            for item in try list.list("services") {
                let s = try item.object()
                let name = try s.required("name").nonEmptyString()
                config.allowlist[name, default: []].formUnion(try s.list("method_names").map { try $0.nonEmptyString() })
                try s.finish()
            }
            try list.finish()
        }
        try obj.finish()
        return config
    }

    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        GRPCStatsFactory(name: context.filterName, config: self, dynamic: context.registry.dynamic)
    }
}

struct GRPCStatsFactory: HTTPFilterFactory {
    let name: String
    let config: GRPCStatsConfig
    /// Cluster stat names are known only per request (the route's cluster).
    let dynamic: DynamicStats
    /// Per request: its cluster, method and message counts.
    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { GRPCStatsFilter(config: config, dynamic: dynamic) }
}
