import NIOCore
import SidecarCore

/// Zipkin's JSON v2 span list (`POST /api/v2/spans`), as Envoy's Zipkin tracer writes it.
enum ZipkinJSON {
    struct Endpoint {
        var serviceName: String
        var address: String
    }

    static func encode(_ spans: [Span], localEndpoint: Endpoint) -> String {
        var out = "["
        out.reserveCapacity(spans.count * 700)
        var endpoint = "{\"serviceName\":"
        string(localEndpoint.serviceName, into: &endpoint)
        endpoint += localEndpoint.address.contains(":") ? ",\"ipv6\":" : ",\"ipv4\":"
        string(localEndpoint.address, into: &endpoint)
        endpoint += ",\"port\":0}"
        for (i, s) in spans.enumerated() {
            if i > 0 { out += "," }
            out += "{\"traceId\":\""
            out += TraceHex.encode(trace: s.trace)
            out += "\",\"id\":\""
            out += TraceHex.encode(s.spanID)
            out += "\""
            if s.parentID != 0 {
                out += ",\"parentId\":\""
                out += TraceHex.encode(s.parentID)
                out += "\""
            }
            out += ",\"name\":"
            string(s.name, into: &out)
            out += s.kind == .server ? ",\"kind\":\"SERVER\"" : ",\"kind\":\"CLIENT\""
            out += ",\"timestamp\":\(s.startUnixNanos / 1000),\"duration\":\(s.durationMicros)"
            out += ",\"localEndpoint\":" + endpoint
            out += ",\"annotations\":[{\"timestamp\":\(s.endUnixNanos / 1000),\"value\":"
            out += s.kind == .server ? "\"ss\"}]" : "\"cr\"}]"
            out += ",\"tags\":{"
            for (j, (k, v)) in s.tags.enumerated() {
                if j > 0 { out += "," }
                string(k, into: &out)
                out += ":"
                string(v, into: &out)
            }
            out += "}"
            if s.shared { out += ",\"shared\":true" }
            out += "}"
        }
        out += "]"
        return out
    }

    /// A JSON string literal.
    static func string(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

/// Zipkin JSON v2 over HTTP/1.1 to `collector_endpoint` on the collector cluster (Host: `collector_hostname`).
final class ZipkinTransport: SpanTransport {
    private let config: ZipkinTracerConfig
    private let client: CollectorHTTPClient
    private let localEndpoint: ZipkinJSON.Endpoint
    private let loop: EventLoop

    init(config: ZipkinTracerConfig, loop: EventLoop, localEndpoint: ZipkinJSON.Endpoint,
         resolve: @escaping @Sendable () -> SocketAddress?) {
        self.config = config
        self.loop = loop
        self.localEndpoint = localEndpoint
        client = CollectorHTTPClient(loop: loop, resolve: resolve)
    }

    func send(_ spans: [Span]) -> EventLoopFuture<Void> {
        let json = ZipkinJSON.encode(spans, localEndpoint: localEndpoint)
        let body = ByteBuffer(string: json)
        return client.post(path: config.collectorEndpoint, host: config.collectorHostname, headers: [],
                           contentType: "application/json", body: body, timeout: .seconds(5))
            .flatMapThrowing { status in
                guard (200..<300).contains(status) else { throw CollectorError.status(status) }
            }
    }
}
