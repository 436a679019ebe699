import Foundation
import SwiftProtobuf

/// Spans as OTLP's `ExportTraceServiceRequest` (opentelemetry-proto, generated into Generated/), the same
/// message over gRPC and over HTTP.
enum OTLPEncoding {
    typealias Request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest
    typealias Response = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse

    static let sdkName = "pilotfish"
    static let sdkVersion = "0.1"

    struct Resource {
        var serviceName: String

        var message: Opentelemetry_Proto_Resource_V1_Resource {
            var r = Opentelemetry_Proto_Resource_V1_Resource()
            r.attributes = [
                keyValue("telemetry.sdk.name", sdkName),
                keyValue("service.name", serviceName),
                keyValue("telemetry.sdk.language", "swift"),
                keyValue("telemetry.sdk.version", sdkVersion),
            ]
            return r
        }
    }

    /// OTLP span flags: the W3C trace flags in the low byte, and whether the parent is remote (bits 8 and 9).
    static let hasIsRemote: UInt32 = 0x100
    static let isRemote: UInt32 = 0x200

    static func request(_ spans: [Span], resource: Resource) -> Request {
        var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
        scope.scope.name = sdkName
        scope.scope.version = sdkVersion
        scope.spans = spans.map(span)
        var rs = Opentelemetry_Proto_Trace_V1_ResourceSpans()
        rs.resource = resource.message
        rs.scopeSpans = [scope]
        var request = Request()
        request.resourceSpans = [rs]
        return request
    }

    /// On the exporter's thread: a downstream span's deferred tags become its tag list here (Zipkin's encoder
    /// writes them straight into its report instead).
    static func span(_ s: Span) -> Opentelemetry_Proto_Trace_V1_Span {
        s.resolveTags()
        var m = Opentelemetry_Proto_Trace_V1_Span()
        m.traceID = bytes(s.trace.high) + bytes(s.trace.low)
        m.spanID = bytes(s.spanID)
        if s.parentID != 0 { m.parentSpanID = bytes(s.parentID) }
        if !s.traceState.isEmpty { m.traceState = s.traceState }
        m.name = s.name
        m.kind = s.kind == .server ? .server : .client
        m.startTimeUnixNano = s.startUnixNanos
        m.endTimeUnixNano = s.endUnixNanos
        m.attributes = s.tags.map { keyValue($0.name, $0.value) }
        if s.error { m.status.code = .error }
        m.flags = (s.sampled ? 1 : 0) | hasIsRemote | (s.remoteParent ? isRemote : 0)
        return m
    }

    static func keyValue(_ key: String, _ value: String) -> Opentelemetry_Proto_Common_V1_KeyValue {
        var kv = Opentelemetry_Proto_Common_V1_KeyValue()
        kv.key = key
        kv.value.stringValue = value
        return kv
    }

    /// Big-endian, as OTLP's byte ids.
    static func bytes(_ v: UInt64) -> Data {
        withUnsafeBytes(of: v.bigEndian) { Data($0) }
    }
}
