import NIOCore
import SidecarCore

/// Zipkin's JSON v2 span list (`POST /api/v2/spans`), as Envoy's Zipkin tracer writes it.
enum ZipkinJSON {
    struct Endpoint {
        var serviceName: String
        var address: String
    }

    /// The span list, written into one buffer (the request body as it is sent): literals are copied whole,
    /// ids and numbers written in place, strings copied with their escapes in one pass.
    static func encode(_ spans: [Span], localEndpoint: Endpoint, allocator: ByteBufferAllocator = .init()) -> ByteBuffer {
        var endpoint = allocator.buffer(capacity: 128)
        endpoint.writeStaticString("{\"serviceName\":")
        string(localEndpoint.serviceName, into: &endpoint)
        endpoint.writeStaticString(localEndpoint.address.utf8.contains(UInt8(ascii: ":")) ? ",\"ipv6\":" : ",\"ipv4\":")
        string(localEndpoint.address, into: &endpoint)
        endpoint.writeStaticString(",\"port\":0}")
        var out = allocator.buffer(capacity: spans.count * 1024)
        out.writeInteger(UInt8(ascii: "["))
        for (i, s) in spans.enumerated() {
            if i > 0 { out.writeInteger(UInt8(ascii: ",")) }
            out.writeStaticString("{\"traceId\":\"")
            if s.trace.high != 0 { hex(s.trace.high, &out) }
            hex(s.trace.low, &out)
            out.writeStaticString("\",\"id\":\"")
            hex(s.spanID, &out)
            out.writeInteger(UInt8(ascii: "\""))
            if s.parentID != 0 {
                out.writeStaticString(",\"parentId\":\"")
                hex(s.parentID, &out)
                out.writeInteger(UInt8(ascii: "\""))
            }
            out.writeStaticString(",\"name\":")
            string(s.name, into: &out)
            out.writeStaticString(s.kind == .server ? ",\"kind\":\"SERVER\",\"timestamp\":" : ",\"kind\":\"CLIENT\",\"timestamp\":")
            decimal(s.startUnixNanos / 1000, &out)
            out.writeStaticString(",\"duration\":")
            decimal(s.durationMicros, &out)
            out.writeStaticString(",\"localEndpoint\":")
            out.writeImmutableBuffer(endpoint)
            out.writeStaticString(",\"annotations\":[{\"timestamp\":")
            decimal(s.endUnixNanos / 1000, &out)
            out.writeStaticString(s.kind == .server ? ",\"value\":\"ss\"}],\"tags\":{" : ",\"value\":\"cr\"}],\"tags\":{")
            var firstTag = true
            for tag in s.tags {
                if !firstTag { out.writeInteger(UInt8(ascii: ",")) }
                firstTag = false
                string(tag.name, into: &out)
                out.writeInteger(UInt8(ascii: ":"))
                string(tag.value, into: &out)
            }
            out.writeInteger(UInt8(ascii: "}"))
            if s.shared { out.writeStaticString(",\"shared\":true") }
            out.writeInteger(UInt8(ascii: "}"))
        }
        out.writeInteger(UInt8(ascii: "]"))
        return out
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// 16 lower-case hex digits.
    static func hex(_ v: UInt64, _ out: inout ByteBuffer) {
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: 16) { buf in
            hexDigits.withUTF8Buffer { digits in
                for i in 0..<16 { buf[i] = digits[Int((v >> UInt64(60 - 4 * i)) & 0xF)] }
            }
            return 16
        }
    }

    static func decimal(_ v: UInt64, _ out: inout ByteBuffer) {
        var digits = 1
        var rest = v
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { buf in
            var n = v
            for i in stride(from: digits - 1, through: 0, by: -1) {
                buf[i] = 0x30 &+ UInt8(truncatingIfNeeded: n % 10)
                n /= 10
            }
            return digits
        }
    }

    /// A JSON string literal: the UTF-8 bytes as they are, with `"`, `\\` and control bytes escaped (bytes of
    /// multi-byte characters are all 0x80 or above, so they pass unchanged), copied in one pass.
    static func string(_ s: String, into out: inout ByteBuffer) {
        var s = s
        s.withUTF8 { bytes in
            // Room for the quotes and the worst case (every byte a \u00XX escape).
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes.count * 6 + 2) { buf in
                var o = 0
                buf[o] = UInt8(ascii: "\"")
                o += 1
                for b in bytes {
                    if b >= 0x20 && b != 0x22 && b != 0x5C {
                        buf[o] = b
                        o += 1
                        continue
                    }
                    buf[o] = 0x5C
                    switch b {
                    case 0x22, 0x5C:
                        buf[o + 1] = b
                        o += 2
                    case 0x0A:
                        buf[o + 1] = UInt8(ascii: "n")
                        o += 2
                    case 0x0D:
                        buf[o + 1] = UInt8(ascii: "r")
                        o += 2
                    case 0x09:
                        buf[o + 1] = UInt8(ascii: "t")
                        o += 2
                    default:
                        buf[o + 1] = UInt8(ascii: "u")
                        buf[o + 2] = 0x30
                        buf[o + 3] = 0x30
                        buf[o + 4] = b >> 4 == 0 ? 0x30 : 0x31
                        let low = b & 0xF
                        buf[o + 5] = low < 10 ? 0x30 &+ low : 0x57 &+ low
                        o += 6
                    }
                }
                buf[o] = UInt8(ascii: "\"")
                return o + 1
            }
        }
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
        let body = ZipkinJSON.encode(spans, localEndpoint: localEndpoint)
        return client.post(path: config.collectorEndpoint, host: config.collectorHostname, headers: [],
                           contentType: "application/json", body: body, timeout: .seconds(5))
            .flatMapThrowing { status in
                guard (200..<300).contains(status) else { throw CollectorError.status(status) }
            }
    }

    func close() { client.reset() }
}
