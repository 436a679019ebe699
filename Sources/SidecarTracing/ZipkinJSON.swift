import NIOCore
import SidecarCore

/// Zipkin's JSON v2 span list (`POST /api/v2/spans`), as Envoy's Zipkin tracer writes it.
enum ZipkinJSON {
    struct Endpoint {
        var serviceName: String
        var address: String
    }

    /// The span list as UTF-8 bytes, written into one preallocated array (no string per id or tag).
    static func encode(_ spans: [Span], localEndpoint: Endpoint) -> [UInt8] {
        var endpoint: [UInt8] = []
        append("{\"serviceName\":", &endpoint)
        string(localEndpoint.serviceName, into: &endpoint)
        append(localEndpoint.address.contains(":") ? ",\"ipv6\":" : ",\"ipv4\":", &endpoint)
        string(localEndpoint.address, into: &endpoint)
        append(",\"port\":0}", &endpoint)
        var out: [UInt8] = []
        out.reserveCapacity(spans.count * 900)
        out.append(UInt8(ascii: "["))
        for (i, s) in spans.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            append("{\"traceId\":\"", &out)
            if s.trace.high != 0 { hex(s.trace.high, &out) }
            hex(s.trace.low, &out)
            append("\",\"id\":\"", &out)
            hex(s.spanID, &out)
            out.append(UInt8(ascii: "\""))
            if s.parentID != 0 {
                append(",\"parentId\":\"", &out)
                hex(s.parentID, &out)
                out.append(UInt8(ascii: "\""))
            }
            append(",\"name\":", &out)
            string(s.name, into: &out)
            append(s.kind == .server ? ",\"kind\":\"SERVER\",\"timestamp\":" : ",\"kind\":\"CLIENT\",\"timestamp\":", &out)
            decimal(s.startUnixNanos / 1000, &out)
            append(",\"duration\":", &out)
            decimal(s.durationMicros, &out)
            append(",\"localEndpoint\":", &out)
            out.append(contentsOf: endpoint)
            append(",\"annotations\":[{\"timestamp\":", &out)
            decimal(s.endUnixNanos / 1000, &out)
            append(s.kind == .server ? ",\"value\":\"ss\"}],\"tags\":{" : ",\"value\":\"cr\"}],\"tags\":{", &out)
            for (j, (k, v)) in s.tags.enumerated() {
                if j > 0 { out.append(UInt8(ascii: ",")) }
                string(k, into: &out)
                out.append(UInt8(ascii: ":"))
                string(v, into: &out)
            }
            out.append(UInt8(ascii: "}"))
            if s.shared { append(",\"shared\":true", &out) }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    @inline(__always)
    static func append(_ s: StaticString, _ out: inout [UInt8]) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    /// 16 lower-case hex digits.
    @inline(__always)
    static func hex(_ v: UInt64, _ out: inout [UInt8]) {
        for shift in stride(from: 60, through: 0, by: -4) {
            let n = UInt8(truncatingIfNeeded: (v >> UInt64(shift)) & 0xF)
            out.append(n < 10 ? 48 &+ n : 87 &+ n)
        }
    }

    static func decimal(_ v: UInt64, _ out: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = v
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            repeat {
                buf[19 - count] = 48 &+ UInt8(n % 10)
                n /= 10
                count += 1
            } while n > 0
            out.append(contentsOf: buf[(20 - count)...])
        }
    }

    /// A JSON string literal: the UTF-8 bytes as they are, with `"`, `\\` and control bytes escaped (bytes of
    /// multi-byte characters are all 0x80 or above, so they pass unchanged).
    static func string(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            var start = 0
            for (i, b) in bytes.enumerated() where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
                out.append(contentsOf: bytes[start..<i])
                switch b {
                case UInt8(ascii: "\""): append("\\\"", &out)
                case UInt8(ascii: "\\"): append("\\\\", &out)
                case 0x0A: append("\\n", &out)
                case 0x0D: append("\\r", &out)
                case 0x09: append("\\t", &out)
                default:
                    append("\\u00", &out)
                    out.append(b >> 4 == 0 ? 48 : 49)
                    let low = b & 0xF
                    out.append(low < 10 ? 48 &+ low : 87 &+ low)
                }
                start = i + 1
            }
            out.append(contentsOf: bytes[start...])
        }
        out.append(UInt8(ascii: "\""))
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
        let body = ByteBuffer(bytes: ZipkinJSON.encode(spans, localEndpoint: localEndpoint))
        return client.post(path: config.collectorEndpoint, host: config.collectorHostname, headers: [],
                           contentType: "application/json", body: body, timeout: .seconds(5))
            .flatMapThrowing { status in
                guard (200..<300).contains(status) else { throw CollectorError.status(status) }
            }
    }

    func close() { client.reset() }
}
