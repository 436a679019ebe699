import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.compressor` (Envoy's compressor_filter.cc): compresses responses the client accepts in this
/// filter's encoding, and (with `request_direction_config`) request bodies.
///
/// A response is compressed when the filter is enabled, its `content-length` (if any) reaches
/// `min_content_length`, the negotiated encoding is this filter's, its `content-type` (if any) is listed, it has
/// no `cache-control: no-transform`, no `content-encoding`, no ETag when `disable_on_etag_header`, a status not in
/// `uncompressible_response_codes`, and a body (not HEAD, 204, 304). It then loses `content-length` (the codec
/// chunks it), gets `content-encoding`, and a strong ETag is dropped (or weakened with `weaken_etag_on_compress`).
/// `vary: Accept-Encoding` is added to every response that could have been compressed, whatever the client asked.
///
/// Several compressor filters in one chain negotiate once per request: the first that looks at the client's
/// `accept-encoding` picks the encoding among all of them (q-values, then `choose_first`, then chain order for
/// `*`), the others follow that decision.
final class CompressorFilter: HTTPStreamFilter {
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.compressor",
        decode: { try CompressorConfig.decode($0) },
        perRoute: [(CompressorPerRoute.typeURL, { @Sendable (o: ConfigObject) throws -> any Sendable in
            try CompressorPerRoute.decode(o)
        })],
        fields: [
            .init("envoy.extensions.filters.http.compressor.v3.Compressor", type: typeURL, """
                compressor_library content_length content_type disable_on_etag_header remove_accept_encoding_header
                runtime_enabled request_direction_config response_direction_config choose_first
                """),
            .init("envoy.extensions.filters.http.compressor.v3.Compressor.ResponseDirectionConfig", """
                common_config disable_on_etag_header remove_accept_encoding_header uncompressible_response_codes
                status_header_enabled weaken_etag_on_compress
                """),
            .init("envoy.extensions.filters.http.compressor.v3.Compressor.RequestDirectionConfig", "common_config"),
            .init("envoy.extensions.filters.http.compressor.v3.Compressor.CommonDirectionConfig",
                  "enabled min_content_length content_type"),
            .init("envoy.extensions.filters.http.compressor.v3.CompressorPerRoute", type: CompressorPerRoute.typeURL,
                  "disabled overrides"),
            .init("envoy.extensions.filters.http.compressor.v3.CompressorOverrides",
                  "response_direction_config compressor_library"),
            .init("envoy.extensions.filters.http.compressor.v3.ResponseDirectionOverrides",
                  "remove_accept_encoding_header"),
            .init("envoy.config.core.v3.TypedExtensionConfig", "name typed_config"),
            .init("envoy.extensions.compression.gzip.compressor.v3.Gzip", type: CompressorLibrary.gzipType,
                  "memory_level compression_level compression_strategy window_bits chunk_size"),
            .init("envoy.extensions.compression.brotli.compressor.v3.Brotli", type: CompressorLibrary.brotliType,
                  "quality encoder_mode window_bits input_block_bits chunk_size disable_literal_context_modeling"),
            .init("envoy.extensions.compression.zstd.compressor.v3.Zstd", type: CompressorLibrary.zstdType,
                  "compression_level enable_checksum strategy dictionary chunk_size"),
        ])

    let factory: CompressorFactory
    private var config: CompressorConfig { factory.config }
    private var stats: CompressorStats { factory.stats }

    /// The request's `accept-encoding` as this filter saw it.
    private var acceptEncoding: String?
    private var responseCompressor: (any StreamCompressor)?
    private var requestCompressor: (any StreamCompressor)?
    /// The encoding decision of this request, kept by the chain's first compressor for the others.
    fileprivate var decision: EncodingDecision?

    init(factory: CompressorFactory) {
        self.factory = factory
    }

    /// The route disables the filter (`FilterConfig.disabled`): Envoy leaves it out of the stream altogether.
    private func absent(_ stream: HTTPFilterStream) -> Bool { stream.filterDisabled(factory.name) }

    private func responseEnabled(_ perRoute: CompressorPerRoute?) -> Bool {
        perRoute?.responseEnabled ?? config.response.enabled
    }

    // MARK: Request

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if absent(stream) { return .continue }
        acceptEncoding = HeaderTokens.combined(head.headers, "accept-encoding")
        let perRoute = stream.perRouteConfig(factory.name, as: CompressorPerRoute.self)
        if responseEnabled(perRoute) && (perRoute?.removeAcceptEncodingHeader ?? config.removeAcceptEncodingHeader) {
            head.headers.remove(name: "accept-encoding")
        }

        let request = config.request
        let ends = endStream || !stream.requestHasBody
        if !ends && request.enabled
            && minimumLength(head.headers.first(name: "content-length"), request.minContentLength,
                             tooSmall: stats.requestContentLengthTooSmall, stream)
            && Self.contentTypeAllowed(head.headers, request.contentTypes)
            && !head.headers.contains(name: "content-encoding")
            && transferEncodingAllowed(head.headers)
        {
            head.headers.remove(name: "content-length")
            HeaderTokens.ensureChunked(&head.headers)
            head.headers.add(name: "content-encoding", value: config.library.contentEncoding)
            stream.stats.inc(stats.requestCompressed)
            requestCompressor = config.library.makeCompressor()
        } else {
            stream.stats.inc(stats.requestNotCompressed)
        }
        return .continue
    }

    func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        guard let compressor = requestCompressor else { return .continue }
        stream.stats.add(stats.requestTotalUncompressedBytes, data.readableBytes)
        data = compressor.compress(data, finish: endStream)
        stream.stats.add(stats.requestTotalCompressedBytes, data.readableBytes)
        if endStream { requestCompressor = nil }
        return .continue
    }

    func decodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        guard let compressor = requestCompressor else { return .continue }
        requestCompressor = nil
        let tail = compressor.compress(ByteBuffer(), finish: true)
        stream.stats.add(stats.requestTotalCompressedBytes, tail.readableBytes)
        stream.addDecodedData(tail)
        return .continue
    }

    // MARK: Response

    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if absent(stream) { return .continue }
        let perRoute = stream.perRouteConfig(factory.name, as: CompressorPerRoute.self)
        let response = config.response
        let headers = head.headers
        // Envoy evaluates these in this order, and only as far as needed: the counters they bump depend on it.
        // Envoy's codec drops the content-length of a 1xx or 204 response before any filter sees it.
        let length = head.status.code < 200 || head.status.code == 204 ? nil : headers.first(name: "content-length")
        let bigEnough = responseEnabled(perRoute)
            && minimumLength(length, response.minContentLength, tooSmall: stats.contentLengthTooSmall, stream)
        let compressible = bigEnough
            && Self.contentTypeAllowed(headers, response.contentTypes)
            && !Self.noTransform(headers)
            && etagAllowed(headers, stream)
            && !headers.contains(name: "content-encoding")
            && !config.uncompressibleResponseCodes.contains(Int(head.status.code))
        let ends = endStream || HeaderTokens.responseHasNoBody(head.status, headRequest: stream.isHeadRequest)
        if !ends && bigEnough && acceptEncodingAllowed(headers, stream) && compressible
            && transferEncodingAllowed(headers)
        {
            sanitizeEtag(&head.headers)
            head.headers.remove(name: "content-length")
            head.headers.add(name: "content-encoding", value: config.library.contentEncoding)
            stream.stats.inc(stats.compressed)
            responseCompressor = config.library.makeCompressor()
        } else {
            stream.stats.inc(stats.notCompressed)
        }
        // Even when this client gets no compression, a cache in front must know that others may.
        if compressible { Self.insertVary(&head.headers) }
        return .continue
    }

    func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        guard let compressor = responseCompressor else { return .continue }
        stream.stats.add(stats.totalUncompressedBytes, data.readableBytes)
        data = compressor.compress(data, finish: endStream)
        stream.stats.add(stats.totalCompressedBytes, data.readableBytes)
        if endStream { responseCompressor = nil }
        return .continue
    }

    func encodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        guard let compressor = responseCompressor else { return .continue }
        responseCompressor = nil
        let tail = compressor.compress(ByteBuffer(), finish: true)
        stream.stats.add(stats.totalCompressedBytes, tail.readableBytes)
        stream.addEncodedData(tail)
        return .continue
    }

    func onStreamComplete(stream: HTTPFilterStream) {
        responseCompressor = nil
        requestCompressor = nil
    }

    // MARK: Checks

    /// `content-length` reaches the minimum (else `content_length_too_small`); without one, the length is unknown
    /// and the message qualifies.
    private func minimumLength(_ contentLength: String?, _ minimum: Int, tooSmall: Int, _ stream: HTTPFilterStream) -> Bool {
        guard let value = contentLength else { return true }
        if let n = Int(value), n >= minimum { return true }
        stream.stats.inc(tooSmall)
        return false
    }

    /// `content-type` without its parameters is one of `types` (any type when there is no `content-type`).
    static func contentTypeAllowed(_ headers: HTTPHeaders, _ types: Set<String>) -> Bool {
        guard let value = HeaderTokens.combined(headers, "content-type") else { return true }
        let type = HeaderTokens.trim(HeaderTokens.cropRight(Substring(value), ";"))
        return types.contains(type.lowercased())
    }

    static func noTransform(_ headers: HTTPHeaders) -> Bool {
        guard let value = HeaderTokens.combined(headers, "cache-control") else { return false }
        return HeaderTokens.containsTokenIgnoringCase(value, "no-transform")
    }

    /// `disable_on_etag_header` refuses responses with an ETag (`not_compressed_etag`), unless
    /// `weaken_etag_on_compress`, which takes precedence.
    private func etagAllowed(_ headers: HTTPHeaders, _ stream: HTTPFilterStream) -> Bool {
        guard config.disableOnEtagHeader && !config.weakenEtagOnCompress && headers.contains(name: "etag") else {
            return true
        }
        stream.stats.inc(stats.notCompressedEtag)
        return false
    }

    /// A `transfer-encoding` that already compresses (this filter's encoding, gzip or deflate) is left alone.
    private func transferEncodingAllowed(_ headers: HTTPHeaders) -> Bool {
        guard let value = HeaderTokens.combined(headers, "transfer-encoding") else { return true }
        let mine = config.library.contentEncoding
        return !value.split(separator: ",").contains {
            let t = HeaderTokens.trim($0).lowercased()
            return t == mine || t == "gzip" || t == "deflate"
        }
    }

    /// A strong ETag cannot describe the compressed body: it is removed, or weakened with `W/`.
    private func sanitizeEtag(_ headers: inout HTTPHeaders) {
        guard let etag = headers.first(name: "etag") else { return }
        if etag.hasPrefix("W/") || etag.hasPrefix("w/") { return }
        if config.weakenEtagOnCompress {
            HeaderTokens.set(&headers, "etag", "W/" + etag)
        } else {
            headers.remove(name: "etag")
        }
    }

    /// Adds `Accept-Encoding` to `vary` unless it is there (exact token, as Envoy compares it).
    static func insertVary(_ headers: inout HTTPHeaders) {
        guard let vary = HeaderTokens.combined(headers, "vary") else {
            headers.add(name: "vary", value: "Accept-Encoding")
            return
        }
        if HeaderTokens.containsToken(vary, "Accept-Encoding") { return }
        HeaderTokens.set(&headers, "vary", vary + ", Accept-Encoding")
    }

    // MARK: Accept-Encoding negotiation

    /// Whether the client's `accept-encoding` picks this filter's encoding, counting how the header was read.
    private func acceptEncodingAllowed(_ headers: HTTPHeaders, _ stream: HTTPFilterStream) -> Bool {
        guard let accept = acceptEncoding else {
            stream.stats.inc(stats.noAcceptHeader)
            return false
        }
        let chain = stream.filters.compactMap { $0 as? CompressorFilter }.filter { !$0.absent(stream) }
        let keeper = chain.first ?? self
        let decision: EncodingDecision
        if let cached = keeper.decision {
            decision = cached
        } else {
            decision = EncodingDecision.choose(accept: accept, contentType: HeaderTokens.combined(headers, "content-type"),
                                               chain: chain.map(\.factory.config))
            keeper.decision = decision
        }
        let mine = decision.encoding.lowercased() == config.library.contentEncoding
        switch decision.kind {
        case .compressor: stream.stats.inc(mine ? stats.headerCompressorUsed : stats.headerCompressorOvershadowed)
        case .identity: stream.stats.inc(stats.headerIdentity)
        case .wildcard: stream.stats.inc(stats.headerWildcard)
        case .notValid: stream.stats.inc(stats.headerNotValid)
        }
        return mine
    }
}

/// The encoding a request's `accept-encoding` selects among a chain's compressors (Envoy's `chooseEncoding`).
struct EncodingDecision: Equatable {
    enum Kind { case compressor, identity, wildcard, notValid }
    var encoding: String
    var kind: Kind

    /// - `chain`: the configs of the chain's compressor filters, in order. Those whose content types exclude the
    ///   response's take no part; the first of each encoding counts.
    static func choose(accept: String, contentType: String?, chain: [CompressorConfig]) -> EncodingDecision {
        let type = contentType.map { HeaderTokens.trim(HeaderTokens.cropRight(Substring($0), ";")).lowercased() } ?? ""
        var allowed: [String] = []
        var chooseFirst: String?
        for c in chain {
            if !type.isEmpty && !c.response.contentTypes.contains(type) { continue }
            let encoding = c.library.contentEncoding
            if !allowed.contains(encoding) { allowed.append(encoding) }
            // The last one with choose_first wins ties.
            if c.chooseFirst { chooseFirst = encoding }
        }

        var pairs: [(encoding: Substring, q: Float)] = []
        for token in accept.split(separator: ",") {
            var pair = (encoding: HeaderTokens.trim(HeaderTokens.cropRight(token, ";")), q: Float(1))
            let params = HeaderTokens.cropLeft(token, ";")
            if params.startIndex != token.startIndex {
                let qValue = HeaderTokens.cropLeft(params, "=")
                if qValue.startIndex != params.startIndex
                    && HeaderTokens.trim(HeaderTokens.cropRight(params, "=")).lowercased() == "q"
                {
                    // An unreadable q-value drops the token.
                    guard let q = Float(HeaderTokens.trim(qValue)) else { continue }
                    pair.q = q
                }
            }
            pairs.append(pair)
            // q=0 forbids an encoding, even where "*" would allow it.
            if pair.q == 0 { allowed.removeAll { $0 == pair.encoding } }
        }
        if pairs.isEmpty || allowed.isEmpty { return EncodingDecision(encoding: "identity", kind: .notValid) }

        var choice: (encoding: Substring, q: Float) = ("identity", 0)
        for pair in pairs {
            let known = allowed.contains { $0 == pair.encoding }
            let better = pair.q > choice.q || (pair.q == choice.q && known && chooseFirst.map { $0 == pair.encoding } == true)
            if better && (known || pair.encoding == "identity" || pair.encoding == "*") { choice = pair }
        }
        if choice.q == 0 { return EncodingDecision(encoding: "identity", kind: .notValid) }
        if choice.encoding == "identity" { return EncodingDecision(encoding: "identity", kind: .identity) }
        if choice.encoding == "*" { return EncodingDecision(encoding: allowed[0], kind: .wildcard) }
        return EncodingDecision(encoding: String(choice.encoding), kind: .compressor)
    }
}

/// A compressor filter ready to serve streams: its config and counters; one filter instance per stream.
final class CompressorFactory: HTTPFilterFactory {
    let name: String
    let config: CompressorConfig
    let stats: CompressorStats

    init(name: String, config: CompressorConfig, stats: CompressorStats) {
        self.name = name
        self.config = config
        self.stats = stats
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { CompressorFilter(factory: self) }
}

extension CompressorConfig: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        CompressorFactory(name: context.filterName, config: self,
                          stats: CompressorStats(self, statPrefix: context.statPrefix, registry: context.registry))
    }
}
