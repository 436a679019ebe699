import NIOHTTP1
import SidecarCore

/// `envoy.extensions.filters.http.compressor.v3.Compressor`.
struct CompressorConfig: Sendable {
    /// `CommonDirectionConfig`: when a message of one direction may be compressed.
    struct Direction: Sendable {
        /// `enabled.default_value` (Pilotfish has no runtime layer to override it).
        var enabled = true
        /// `min_content_length`; 0 or unset is Envoy's default, 30.
        var minContentLength = 30
        /// Lower-cased `content_type`s; empty in the config means Envoy's default list.
        var contentTypes = Set(CompressorConfig.defaultContentTypes)
    }

    var library: CompressorLibrary
    var response = Direction()
    /// `response_direction_config` was given: the response stats gain a `response.` segment, as in Envoy.
    var responseDirectionSet = false
    var disableOnEtagHeader = false
    var weakenEtagOnCompress = false
    var removeAcceptEncodingHeader = false
    var uncompressibleResponseCodes: Set<Int> = []
    /// Request compression is off unless `request_direction_config` is given.
    var request = Direction(enabled: false)
    var chooseFirst = false

    /// Envoy's `defaultContentEncoding()`: the types compressed when `content_type` is empty.
    static let defaultContentTypes = [
        "text/html", "text/plain", "text/css", "application/javascript", "application/x-javascript",
        "text/javascript", "text/x-javascript", "text/ecmascript", "text/js", "text/jscript", "text/x-js",
        "application/ecmascript", "application/x-json", "application/xml", "application/json", "image/svg+xml",
        "text/xml", "application/xhtml+xml",
    ]

    static let defaultMinContentLength = 30

    static func decode(_ obj: ConfigObject) throws -> CompressorConfig {
        var c = CompressorConfig(library: try CompressorLibrary.decode(try obj.required("compressor_library")))
        c.chooseFirst = try obj.optional("choose_first")?.bool() ?? false
        // The deprecated top-level fields: what the response direction uses when response_direction_config is
        // absent (Envoy ignores them when it is present).
        var legacy = Direction()
        if let v = obj.optional("content_length") { legacy.minContentLength = try minLength(v) }
        let legacyTypes = try obj.list("content_type").map { try $0.string() }
        if !legacyTypes.isEmpty { legacy.contentTypes = Set(legacyTypes.map { $0.lowercased() }) }
        if let v = obj.optional("runtime_enabled") { legacy.enabled = try runtimeFeatureFlag(v) }
        let legacyEtag = try obj.optional("disable_on_etag_header")?.bool() ?? false
        let legacyRemove = try obj.optional("remove_accept_encoding_header")?.bool() ?? false

        if let value = obj.optional("response_direction_config") {
            let r = try value.object()
            try r.unsupported(["status_header_enabled"])
            c.responseDirectionSet = true
            c.response = try direction(r.optional("common_config"))
            c.disableOnEtagHeader = try r.optional("disable_on_etag_header")?.bool() ?? false
            c.weakenEtagOnCompress = try r.optional("weaken_etag_on_compress")?.bool() ?? false
            c.removeAcceptEncodingHeader = try r.optional("remove_accept_encoding_header")?.bool() ?? false
            for code in try r.list("uncompressible_response_codes") {
                let n = Int(try code.int(min: 200, max: 599))
                if !c.uncompressibleResponseCodes.insert(n).inserted {
                    throw code.error("uncompressible_response_codes must be unique; \(n) is listed twice")
                }
            }
            try r.finish()
        } else {
            c.response = legacy
            c.disableOnEtagHeader = legacyEtag
            c.removeAcceptEncodingHeader = legacyRemove
        }
        if let value = obj.optional("request_direction_config") {
            let r = try value.object()
            c.request = try direction(r.optional("common_config"))
            try r.finish()
        }
        return c
    }

    private static func direction(_ value: ConfigValue?) throws -> Direction {
        var d = Direction()
        guard let value else { return d }
        let obj = try value.object()
        if let v = obj.optional("enabled") { d.enabled = try runtimeFeatureFlag(v) }
        if let v = obj.optional("min_content_length") { d.minContentLength = try minLength(v) }
        let types = try obj.list("content_type").map { try $0.string() }
        if !types.isEmpty { d.contentTypes = Set(types.map { $0.lowercased() }) }
        try obj.finish()
        return d
    }

    /// A `UInt32Value` length where 0 means Envoy's default.
    private static func minLength(_ v: ConfigValue) throws -> Int {
        let n = Int(try v.uint32())
        return n > 0 ? n : defaultMinContentLength
    }

    /// `envoy.config.core.v3.RuntimeFeatureFlag`: its `default_value`.
    static func runtimeFeatureFlag(_ value: ConfigValue) throws -> Bool {
        let obj = try value.object()
        let enabled = try obj.required("default_value").bool()
        _ = try obj.required("runtime_key").nonEmptyString()
        try obj.finish()
        return enabled
    }
}

/// `envoy.extensions.filters.http.compressor.v3.CompressorPerRoute`.
struct CompressorPerRoute: Sendable {
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute"

    var disabled = false
    /// `overrides.response_direction_config` is present: response compression is on for the route.
    var responseOverrides = false
    var removeAcceptEncodingHeader: Bool?

    /// Whether the route turns response compression on or off (nil: the filter's own setting).
    var responseEnabled: Bool? {
        if disabled { return false }
        return responseOverrides ? true : nil
    }

    static func decode(_ obj: ConfigObject) throws -> CompressorPerRoute {
        var p = CompressorPerRoute()
        guard let (key, value) = try obj.oneOf(["disabled", "overrides"]) else { fatalError("unreachable") }
        if key == "disabled" {
            guard try value.bool() else { throw value.error("disabled must be true (CompressorPerRoute)") }
            p.disabled = true
        } else {
            let o = try value.object()
            try o.unsupported(["compressor_library"])
            if let r = try o.optional("response_direction_config")?.object() {
                p.responseOverrides = true
                p.removeAcceptEncodingHeader = try r.optional("remove_accept_encoding_header")?.bool()
                try r.finish()
            }
            try o.finish()
        }
        try obj.finish()
        return p
    }
}

/// The compressor's counters, named as Envoy 1.40 names them under
/// `http.<stat_prefix>.compressor.<compressor_library.name>.<gzip|brotli|zstd>.`: response counters gain a
/// `response.` segment when `response_direction_config` is set; the Accept-Encoding and ETag counters never do;
/// request counters are under `request.`.
struct CompressorStats: Sendable {
    let compressed, notCompressed, totalUncompressedBytes, totalCompressedBytes, contentLengthTooSmall: Int
    let noAcceptHeader, headerIdentity, headerWildcard, headerNotValid, headerCompressorUsed: Int
    let headerCompressorOvershadowed, notCompressedEtag: Int
    let requestCompressed, requestNotCompressed, requestTotalUncompressedBytes, requestTotalCompressedBytes: Int
    let requestContentLengthTooSmall: Int

    init(_ config: CompressorConfig, statPrefix: String, registry r: StatsRegistry) {
        let base = "compressor.\(config.library.name).\(config.library.statName)."
        let label = ("envoy_http_conn_manager_prefix", statPrefix)
        func reg(_ s: String) -> Int {
            r.registerOnce("http.\(statPrefix).\(base)\(s)", .counter, family: "http.\(base)\(s)", labels: [label])
        }
        let response = config.responseDirectionSet ? "response." : ""
        compressed = reg(response + "compressed")
        notCompressed = reg(response + "not_compressed")
        totalUncompressedBytes = reg(response + "total_uncompressed_bytes")
        totalCompressedBytes = reg(response + "total_compressed_bytes")
        contentLengthTooSmall = reg(response + "content_length_too_small")
        noAcceptHeader = reg("no_accept_header")
        headerIdentity = reg("header_identity")
        headerWildcard = reg("header_wildcard")
        headerNotValid = reg("header_not_valid")
        headerCompressorUsed = reg("header_compressor_used")
        headerCompressorOvershadowed = reg("header_compressor_overshadowed")
        notCompressedEtag = reg("not_compressed_etag")
        requestCompressed = reg("request.compressed")
        requestNotCompressed = reg("request.not_compressed")
        requestTotalUncompressedBytes = reg("request.total_uncompressed_bytes")
        requestTotalCompressedBytes = reg("request.total_compressed_bytes")
        requestContentLengthTooSmall = reg("request.content_length_too_small")
    }
}
