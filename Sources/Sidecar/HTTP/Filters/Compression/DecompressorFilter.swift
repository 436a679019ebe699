import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.extensions.filters.http.decompressor.v3.Decompressor`.
struct DecompressorConfig: Sendable {
    struct Direction: Sendable {
        var enabled = true
        var ignoreNoTransformHeader = false
    }

    var library: DecompressorLibrary
    var request = Direction()
    var response = Direction()
    /// `request_direction_config.advertise_accept_encoding` (default true): while response decompression is on,
    /// the request's `accept-encoding` offers the library's encoding upstream.
    var advertiseAcceptEncoding = true

    static func decode(_ obj: ConfigObject) throws -> DecompressorConfig {
        var c = DecompressorConfig(library: try DecompressorLibrary.decode(try obj.required("decompressor_library")))
        if let r = try obj.optional("request_direction_config")?.object() {
            c.request = try direction(r.optional("common_config"))
            c.advertiseAcceptEncoding = try r.optional("advertise_accept_encoding")?.bool() ?? true
            try r.finish()
        }
        if let r = try obj.optional("response_direction_config")?.object() {
            c.response = try direction(r.optional("common_config"))
            try r.finish()
        }
        return c
    }

    private static func direction(_ value: ConfigValue?) throws -> Direction {
        var d = Direction()
        guard let value else { return d }
        let obj = try value.object()
        if let v = obj.optional("enabled") { d.enabled = try CompressorConfig.runtimeFeatureFlag(v) }
        d.ignoreNoTransformHeader = try obj.optional("ignore_no_transform_header")?.bool() ?? false
        try obj.finish()
        return d
    }
}

/// `http.<stat_prefix>.decompressor.<decompressor_library.name>.<gzip|brotli|zstd>.<request|response>.*`.
struct DecompressorStats: Sendable {
    struct Direction: Sendable {
        let decompressed, notDecompressed, totalUncompressedBytes, totalCompressedBytes: Int
    }
    let request: Direction
    let response: Direction
}

/// `envoy.filters.http.decompressor` (Envoy's decompressor_filter.cc): decompresses request and response bodies
/// whose first `content-encoding` is the library's, unless `cache-control: no-transform` (and
/// `ignore_no_transform_header` is off). The message loses `content-length` and that first coding. With response
/// decompression on, requests advertise the encoding in `accept-encoding` (`advertise_accept_encoding`).
///
/// Decompression bombs are cut as Envoy cuts them: one chunk may inflate to at most `max_inflate_ratio` (gzip)
/// or 100 (brotli, zstd) times its size; the rest of it is dropped and the library's error counter goes up.
final class DecompressorFilter: HTTPStreamFilter {
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.decompressor", decode: { try DecompressorConfig.decode($0) },
        fields: [
            .init("envoy.extensions.filters.http.decompressor.v3.Decompressor", type: typeURL,
                  "decompressor_library request_direction_config response_direction_config"),
            .init("envoy.extensions.filters.http.decompressor.v3.Decompressor.RequestDirectionConfig",
                  "common_config advertise_accept_encoding"),
            .init("envoy.extensions.filters.http.decompressor.v3.Decompressor.ResponseDirectionConfig", "common_config"),
            .init("envoy.extensions.filters.http.decompressor.v3.Decompressor.CommonDirectionConfig",
                  "enabled ignore_no_transform_header"),
            .init("envoy.extensions.compression.gzip.decompressor.v3.Gzip", type: DecompressorLibrary.gzipType,
                  "window_bits chunk_size max_inflate_ratio"),
            .init("envoy.extensions.compression.brotli.decompressor.v3.Brotli", type: DecompressorLibrary.brotliType,
                  "disable_ring_buffer_reallocation chunk_size"),
            .init("envoy.extensions.compression.zstd.decompressor.v3.Zstd", type: DecompressorLibrary.zstdType,
                  "dictionaries chunk_size"),
        ])

    let factory: DecompressorFactoryBox
    private var requestDecompressor: (any StreamDecompressor)?
    private var responseDecompressor: (any StreamDecompressor)?
    private var requestBytes = (compressed: 0, uncompressed: 0)
    private var responseBytes = (compressed: 0, uncompressed: 0)

    init(factory: DecompressorFactoryBox) {
        self.factory = factory
    }

    private var config: DecompressorConfig { factory.config }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if stream.filterDisabled(factory.name) { return .continue }
        if config.response.enabled && config.advertiseAcceptEncoding {
            let value = Self.addEncoding(config.library.contentEncoding,
                                         to: HeaderTokens.combined(head.headers, "accept-encoding") ?? "")
            HeaderTokens.set(&head.headers, "accept-encoding", value)
        }
        // A request without a body has nothing to decompress (and counts nothing).
        if endStream || !stream.requestHasBody { return .continue }
        if start(config.request, factory.stats.request, &head.headers, stream) {
            HeaderTokens.ensureChunked(&head.headers)
            requestDecompressor = factory.library.make()
        }
        return .continue
    }

    func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        guard let d = requestDecompressor else { return .continue }
        data = run(d, data, factory.stats.request, &requestBytes, stream)
        return .continue
    }

    func decodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        if requestDecompressor != nil { reportBytes(requestBytes, into: &trailers) }
        return .continue
    }

    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if stream.filterDisabled(factory.name) { return .continue }
        if endStream || HeaderTokens.responseHasNoBody(head.status, headRequest: stream.isHeadRequest) { return .continue }
        if start(config.response, factory.stats.response, &head.headers, stream) {
            responseDecompressor = factory.library.make()
        }
        return .continue
    }

    func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        guard let d = responseDecompressor else { return .continue }
        data = run(d, data, factory.stats.response, &responseBytes, stream)
        return .continue
    }

    func encodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        if responseDecompressor != nil { reportBytes(responseBytes, into: &trailers) }
        return .continue
    }

    func onStreamComplete(stream: HTTPFilterStream) {
        requestDecompressor = nil
        responseDecompressor = nil
    }

    /// Envoy's `maybeInitDecompress`: whether this message is decompressed; its headers are updated if so.
    private func start(_ direction: DecompressorConfig.Direction, _ stats: DecompressorStats.Direction,
                       _ headers: inout HTTPHeaders, _ stream: HTTPFilterStream) -> Bool {
        guard direction.enabled,
              direction.ignoreNoTransformHeader || !CompressorFilter.noTransform(headers),
              let codings = HeaderTokens.combined(headers, "content-encoding"),
              HeaderTokens.trim(HeaderTokens.cropRight(Substring(codings), ",")).lowercased()
                == config.library.contentEncoding
        else {
            stream.stats.inc(stats.notDecompressed)
            return false
        }
        stream.stats.inc(stats.decompressed)
        headers.remove(name: "content-length")
        // The first coding is the one removed, as Envoy reads the header.
        let all = HeaderTokens.trim(codings)
        let remaining = HeaderTokens.trim(HeaderTokens.cropLeft(all, ","))
        if remaining != all {
            HeaderTokens.set(&headers, "content-encoding", String(remaining))
        } else {
            headers.remove(name: "content-encoding")
        }
        return true
    }

    private func run(_ d: any StreamDecompressor, _ data: ByteBuffer, _ stats: DecompressorStats.Direction,
                     _ bytes: inout (compressed: Int, uncompressed: Int), _ stream: HTTPFilterStream) -> ByteBuffer {
        let out = d.decompress(data, stats: stream.stats)
        bytes.compressed += data.readableBytes
        bytes.uncompressed += out.readableBytes
        stream.stats.add(stats.totalCompressedBytes, data.readableBytes)
        stream.stats.add(stats.totalUncompressedBytes, out.readableBytes)
        return out
    }

    /// Envoy adds the totals to the trailers of a decompressed message
    /// (`x-envoy-decompressor-<name>-{compressed,uncompressed}-bytes`).
    private func reportBytes(_ bytes: (compressed: Int, uncompressed: Int), into trailers: inout HTTPHeaders) {
        trailers.add(name: factory.trailerPrefix + "-compressed-bytes", value: String(bytes.compressed))
        trailers.add(name: factory.trailerPrefix + "-uncompressed-bytes", value: String(bytes.uncompressed))
    }

    /// Envoy's `HeaderUtility::addEncodingToAcceptEncoding`: `encoding` once, last, without a q-value; the other
    /// codings as they were (trimmed, empty ones dropped).
    static func addEncoding(_ encoding: String, to header: String) -> String {
        var codings: [Substring] = []
        for token in header.split(separator: ",") {
            let trimmed = HeaderTokens.trim(token)
            if trimmed.isEmpty || HeaderTokens.trim(HeaderTokens.cropRight(token, ";")) == encoding { continue }
            codings.append(trimmed)
        }
        codings.append(Substring(encoding))
        return codings.joined(separator: ",")
    }
}

/// A decompressor filter ready to serve streams.
final class DecompressorFactoryBox: HTTPFilterFactory {
    let name: String
    let config: DecompressorConfig
    let library: DecompressorFactory
    let stats: DecompressorStats
    let trailerPrefix: String

    init(name: String, config: DecompressorConfig, statPrefix: String, registry r: StatsRegistry) {
        self.name = name
        self.config = config
        let base = "decompressor.\(config.library.name).\(config.library.statName)."
        let label = ("envoy_http_conn_manager_prefix", statPrefix)
        func direction(_ d: String) -> DecompressorStats.Direction {
            func reg(_ s: String) -> Int {
                r.registerOnce("http.\(statPrefix).\(base)\(d).\(s)", .counter, family: "http.\(base)\(d).\(s)",
                               labels: [label])
            }
            return DecompressorStats.Direction(
                decompressed: reg("decompressed"), notDecompressed: reg("not_decompressed"),
                totalUncompressedBytes: reg("total_uncompressed_bytes"),
                totalCompressedBytes: reg("total_compressed_bytes"))
        }
        stats = DecompressorStats(request: direction("request"), response: direction("response"))
        library = DecompressorFactory(config.library, prefix: "http.\(statPrefix).\(base)decompressor_library.",
                                      registry: r, label: label, family: "http.\(base)decompressor_library.")
        trailerPrefix = "x-envoy-decompressor-\(config.library.name.lowercased())"
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { DecompressorFilter(factory: self) }
}

extension DecompressorConfig: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        DecompressorFactoryBox(name: context.filterName, config: self, statPrefix: context.statPrefix,
                               registry: context.registry)
    }
}
