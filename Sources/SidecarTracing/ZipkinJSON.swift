import NIOCore
import SidecarCore

/// Zipkin's JSON v2 span list (`POST /api/v2/spans`), as Envoy's Zipkin tracer writes it.
enum ZipkinJSON {
    struct Endpoint {
        var serviceName: String
        var address: String
    }

    /// The span list, written into one buffer (the request body as it is sent), each span into room reserved for
    /// its worst case.
    static func encode(_ spans: [Span], localEndpoint: Endpoint, allocator: ByteBufferAllocator = .init()) -> ByteBuffer {
        var endpoint = allocator.buffer(capacity: 256)
        endpoint.writeJSON(worstCase: 40 + JSONBytesWriter.worstCase(localEndpoint.serviceName)
                                          + JSONBytesWriter.worstCase(localEndpoint.address)) { w in
            w.literal("{\"serviceName\":")
            w.string(localEndpoint.serviceName)
            w.literal(localEndpoint.address.utf8.contains(UInt8(ascii: ":")) ? ",\"ipv6\":" : ",\"ipv4\":")
            w.string(localEndpoint.address)
            w.literal(",\"port\":0}")
        }
        var out = allocator.buffer(capacity: spans.count * 1024 + 2)
        out.writeInteger(UInt8(ascii: "["))
        endpoint.withUnsafeReadableBytes { endpointBytes in
            for (i, s) in spans.enumerated() {
                // A downstream span's tags are written from what they are made of (the tracer left them to the
                // exporter), after any the span already has.
                let deferred = s.deferredTags.map { $0.tracer.downstreamTags($0.info) }
                // The fixed text, ids, numbers and the endpoint, then every string at its worst.
                var bound = 400 + endpointBytes.count + JSONBytesWriter.worstCase(s.name)
                for tag in s.tags { bound += JSONBytesWriter.worstCase(tag.name) + JSONBytesWriter.worstCase(tag.value) + 2 }
                var worst = TagsWorstCase()
                deferred?.visit(&worst)
                bound += worst.bytes
                out.writeJSON(worstCase: bound) { w in
                    if i > 0 { w.byte(UInt8(ascii: ",")) }
                    w.literal("{\"traceId\":\"")
                    if s.trace.high != 0 { w.hex(s.trace.high) }
                    w.hex(s.trace.low)
                    w.literal("\",\"id\":\"")
                    w.hex(s.spanID)
                    w.byte(UInt8(ascii: "\""))
                    if s.parentID != 0 {
                        w.literal(",\"parentId\":\"")
                        w.hex(s.parentID)
                        w.byte(UInt8(ascii: "\""))
                    }
                    w.literal(",\"name\":")
                    w.string(s.name)
                    w.literal(s.kind == .server ? ",\"kind\":\"SERVER\",\"timestamp\":" : ",\"kind\":\"CLIENT\",\"timestamp\":")
                    w.decimal(s.startUnixNanos / 1000)
                    w.literal(",\"duration\":")
                    w.decimal(s.durationMicros)
                    w.literal(",\"localEndpoint\":")
                    w.raw(endpointBytes)
                    w.literal(",\"annotations\":[{\"timestamp\":")
                    w.decimal(s.endUnixNanos / 1000)
                    w.literal(s.kind == .server ? ",\"value\":\"ss\"}],\"tags\":{" : ",\"value\":\"cr\"}],\"tags\":{")
                    var tags = TagsWriter(writer: w)
                    for tag in s.tags { tags.tag(tag.name, tag.value, nameIsClean: false) }
                    deferred?.visit(&tags)
                    w = tags.writer
                    w.byte(UInt8(ascii: "}"))
                    if s.shared { w.literal(",\"shared\":true") }
                    w.byte(UInt8(ascii: "}"))
                }
            }
        }
        out.writeInteger(UInt8(ascii: "]"))
        return out
    }
}

extension ZipkinJSON {
    /// Writes the tags object's members (`"name":"value"`, comma-separated).
    struct TagsWriter: SpanTagVisitor {
        var writer: JSONBytesWriter
        var first = true

        init(writer: JSONBytesWriter) {
            self.writer = writer
        }

        private mutating func name(_ name: String, clean: Bool = true) {
            if !first { writer.byte(UInt8(ascii: ",")) }
            first = false
            if clean {
                writer.cleanString(name)
            } else {
                writer.string(name)
            }
            writer.byte(UInt8(ascii: ":"))
        }

        mutating func tag(_ name: String, _ value: String, nameIsClean: Bool) {
            self.name(name, clean: nameIsClean)
            writer.string(value)
        }

        mutating func decimal(_ name: String, _ value: UInt64) {
            self.name(name)
            writer.byte(UInt8(ascii: "\""))
            writer.decimal(value)
            writer.byte(UInt8(ascii: "\""))
        }

        mutating func url(_ name: String, scheme: String, host: String, path: Substring) {
            self.name(name)
            writer.string(scheme, host, path)
        }
    }

    /// The most bytes `TagsWriter` can write for some tags.
    struct TagsWorstCase: SpanTagVisitor {
        var bytes = 0

        mutating func tag(_ name: String, _ value: String, nameIsClean: Bool) {
            bytes += JSONBytesWriter.worstCase(name) + JSONBytesWriter.worstCase(value) + 2
        }

        mutating func decimal(_ name: String, _ value: UInt64) {
            bytes += JSONBytesWriter.worstCase(name) + 24
        }

        mutating func url(_ name: String, scheme: String, host: String, path: Substring) {
            bytes += JSONBytesWriter.worstCase(name) + 2 + (scheme.utf8.count + 3 + host.utf8.count + path.utf8.count) * 6 + 2
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
        client = CollectorHTTPClient(loop: loop, path: config.collectorEndpoint, host: config.collectorHostname,
                                     headers: [], contentType: "application/json", resolve: resolve)
    }

    func send(_ spans: [Span]) -> EventLoopFuture<Void> {
        let body = ZipkinJSON.encode(spans, localEndpoint: localEndpoint)
        return client.post(body: body, timeout: .seconds(5))
            .flatMapThrowing { status in
                guard (200..<300).contains(status) else { throw CollectorError.status(status) }
            }
    }

    func close() { client.reset() }
}
