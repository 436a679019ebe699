import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.grpc_http1_bridge` (Envoy's http1_bridge_filter.cc): an HTTP/1.1 client that cannot read
/// trailers calls a gRPC service. For a gRPC request (`content-type: application/grpc…`) that came over HTTP/1, the
/// response is held (headers and body) until its trailers: a `grpc-status` other than 0 (or unreadable) turns the
/// HTTP status into 503, `grpc-status` and `grpc-message` are copied into the response headers, and
/// `content-length` is set to the held body, so the client reads a complete response without trailers. A response
/// without trailers (trailers-only, or one that ends with its body) goes on as it is, as in Envoy.
///
/// Refused: `upgrade_protobuf_to_grpc` (turning `application/x-protobuf` requests into gRPC frames) and Envoy's
/// per-method gRPC stats (Pilotfish's stats are fixed at start-up; method names are not).
final class GRPCHTTP1BridgeFilter: HTTPStreamFilter {
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.grpc_http1_bridge.v3.Config"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.grpc_http1_bridge",
        decode: { try GRPCHTTP1BridgeConfig.decode($0) },
        fields: [
            .init("envoy.extensions.filters.http.grpc_http1_bridge.v3.Config", type: typeURL,
                  "upgrade_protobuf_to_grpc ignore_query_parameters"),
        ])

    /// This request is bridged (gRPC over HTTP/1).
    private var bridging = false

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        bridging = !stream.downstream.isHTTP2 && RouteMatch.isGRPC(stream.request)
        return .continue
    }

    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        bridging && !endStream ? .stopIteration : .continue
    }

    func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        bridging && !endStream ? .stopIterationAndBuffer : .continue
    }

    func encodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        guard bridging else { return .continue }
        let status = trailers.first(name: "grpc-status")
        let message = trailers.first(name: "grpc-message")
        let length = stream.heldResponseBodyLength
        stream.modifyHeldResponseHead { head in
            if let status {
                if UInt64(status) != 0 { head.status = .serviceUnavailable }
                head.headers.replaceOrAdd(name: "grpc-status", value: status)
            }
            if let message { head.headers.replaceOrAdd(name: "grpc-message", value: message) }
            // The body was held: its length tells an HTTP/1.1 client the response is complete.
            head.headers.remove(name: "transfer-encoding")
            head.headers.replaceOrAdd(name: "content-length", value: String(length))
        }
        return .continue
    }
}

/// The bridge filter's config: `ignore_query_parameters` (which only changes how Envoy names the per-method stats
/// Pilotfish does not keep) is accepted; `upgrade_protobuf_to_grpc: true` is refused.
struct GRPCHTTP1BridgeConfig: HTTPFilterConfig {
    static func decode(_ obj: ConfigObject) throws -> GRPCHTTP1BridgeConfig {
        if let v = obj.optional("upgrade_protobuf_to_grpc"), try v.bool() {
            throw v.error("upgrade_protobuf_to_grpc: true is a valid Envoy setting but Pilotfish does not support it yet")
        }
        _ = try obj.optional("ignore_query_parameters")?.bool()
        try obj.finish()
        return GRPCHTTP1BridgeConfig()
    }

    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        GRPCHTTP1BridgeFactory(name: context.filterName)
    }
}

struct GRPCHTTP1BridgeFactory: HTTPFilterFactory {
    let name: String
    /// Per request: whether it is bridged.
    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { GRPCHTTP1BridgeFilter() }
}
