import CCompression
import SidecarCore

/// The codings both filters know, as HTTP and Envoy's stats name them.
enum CompressionAlgorithm: Sendable {
    case gzip, brotli, zstd

    /// The `content-encoding` token.
    var contentEncoding: String {
        switch self {
        case .gzip: "gzip"
        case .brotli: "br"
        case .zstd: "zstd"
        }
    }

    /// The stats segment (Envoy's `CompressorFactory::statsPrefix`, without the dot).
    var statName: String {
        switch self {
        case .gzip: "gzip"
        case .brotli: "brotli"
        case .zstd: "zstd"
        }
    }
}

/// `compressor_library` of a compressor filter: a `TypedExtensionConfig` whose `typed_config` names the codec.
struct CompressorLibrary: Sendable {
    enum Kind: Sendable {
        case gzip(GzipCompressorParams)
        case brotli(BrotliCompressorParams)
        case zstd(ZstdCompressorParams)
    }

    /// The extension's `name`: part of the stat prefix.
    var name: String
    var kind: Kind

    static let gzipType = "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip"
    static let brotliType = "type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli"
    static let zstdType = "type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd"

    var algorithm: CompressionAlgorithm {
        switch kind {
        case .gzip: .gzip
        case .brotli: .brotli
        case .zstd: .zstd
        }
    }

    /// The `content-encoding` token this library produces.
    var contentEncoding: String { algorithm.contentEncoding }
    /// The library's stats prefix (Envoy's `CompressorFactory::statsPrefix`, without the dot).
    var statName: String { algorithm.statName }

    func makeCompressor() -> any StreamCompressor {
        switch kind {
        case .gzip(let p): GzipCompressor(p)
        case .brotli(let p): BrotliCompressor(p)
        case .zstd(let p): ZstdCompressor(p)
        }
    }

    static func decode(_ value: ConfigValue) throws -> CompressorLibrary {
        let obj = try value.object()
        let name = try obj.required("name").nonEmptyString()
        let typed = try obj.required("typed_config").object()
        let typeValue = try typed.required("@type")
        let kind: Kind
        switch try typeValue.string() {
        case gzipType: kind = .gzip(try GzipCompressorParams.decode(typed))
        case brotliType: kind = .brotli(try BrotliCompressorParams.decode(typed))
        case zstdType: kind = .zstd(try ZstdCompressorParams.decode(typed))
        case let other:
            throw typeValue.error("compressor library \(other) is not supported; supported: "
                + [gzipType, brotliType, zstdType].joined(separator: ", "))
        }
        try typed.finish()
        try obj.finish()
        return CompressorLibrary(name: name, kind: kind)
    }
}

/// `envoy.extensions.compression.gzip.compressor.v3.Gzip`, as zlib takes it.
struct GzipCompressorParams: Sendable {
    var level: Int32 = Z_DEFAULT_COMPRESSION
    var strategy: Int32 = Z_DEFAULT_STRATEGY
    var windowBits: Int32 = 12
    var memoryLevel: Int32 = 5
    var chunkSize = 4096

    static let levels: [(String, Int32)] = [
        ("DEFAULT_COMPRESSION", 0), ("BEST_SPEED", 1), ("COMPRESSION_LEVEL_1", 1), ("COMPRESSION_LEVEL_2", 2),
        ("COMPRESSION_LEVEL_3", 3), ("COMPRESSION_LEVEL_4", 4), ("COMPRESSION_LEVEL_5", 5), ("COMPRESSION_LEVEL_6", 6),
        ("COMPRESSION_LEVEL_7", 7), ("COMPRESSION_LEVEL_8", 8), ("COMPRESSION_LEVEL_9", 9), ("BEST_COMPRESSION", 9),
    ]
    static let strategies: [(String, Int32)] = [
        ("DEFAULT_STRATEGY", Z_DEFAULT_STRATEGY), ("FILTERED", Z_FILTERED), ("HUFFMAN_ONLY", Z_HUFFMAN_ONLY),
        ("RLE", Z_RLE), ("FIXED", Z_FIXED),
    ]

    static func decode(_ obj: ConfigObject) throws -> GzipCompressorParams {
        var p = GzipCompressorParams()
        if let v = obj.optional("memory_level") { p.memoryLevel = Int32(try v.int(min: 1, max: 9)) }
        if let v = obj.optional("compression_level") {
            let level = try v.protoEnum(levels)
            p.level = level == 0 ? Z_DEFAULT_COMPRESSION : level
        }
        if let v = obj.optional("compression_strategy") { p.strategy = try v.protoEnum(strategies) }
        if let v = obj.optional("window_bits") { p.windowBits = Int32(try v.int(min: 9, max: 15)) }
        if let v = obj.optional("chunk_size") { p.chunkSize = Int(try v.int(min: 4096, max: 65536)) }
        return p
    }
}

/// `envoy.extensions.compression.brotli.compressor.v3.Brotli`, as the brotli encoder takes it.
struct BrotliCompressorParams: Sendable {
    var quality: UInt32 = 3
    var windowBits: UInt32 = 18
    var inputBlockBits: UInt32 = 24
    var disableLiteralContextModeling = false
    var mode: UInt32 = BROTLI_MODE_GENERIC.rawValue
    var chunkSize = 4096

    static func decode(_ obj: ConfigObject) throws -> BrotliCompressorParams {
        var p = BrotliCompressorParams()
        if let v = obj.optional("quality") { p.quality = UInt32(try v.int(min: 0, max: 11)) }
        if let v = obj.optional("encoder_mode") {
            // DEFAULT is brotli's default mode, GENERIC.
            let modes: [(String, Int32)] = [("DEFAULT", 0), ("GENERIC", 1), ("TEXT", 2), ("FONT", 3)]
            switch try v.protoEnum(modes) {
            case 2: p.mode = BROTLI_MODE_TEXT.rawValue
            case 3: p.mode = BROTLI_MODE_FONT.rawValue
            default: p.mode = BROTLI_MODE_GENERIC.rawValue
            }
        }
        if let v = obj.optional("window_bits") { p.windowBits = UInt32(try v.int(min: 10, max: 24)) }
        if let v = obj.optional("input_block_bits") { p.inputBlockBits = UInt32(try v.int(min: 16, max: 24)) }
        if let v = obj.optional("chunk_size") { p.chunkSize = Int(try v.int(min: 4096, max: 65536)) }
        p.disableLiteralContextModeling = try obj.optional("disable_literal_context_modeling")?.bool() ?? false
        return p
    }
}

/// `envoy.extensions.compression.zstd.compressor.v3.Zstd`, as zstd's `ZSTD_CCtx_setParameter` takes it.
struct ZstdCompressorParams: Sendable {
    var level: Int32 = ZSTD_CLEVEL_DEFAULT
    var enableChecksum = false
    /// 0: zstd's default strategy for the level.
    var strategy: Int32 = 0
    var chunkSize = 4096

    static func decode(_ obj: ConfigObject) throws -> ZstdCompressorParams {
        try obj.unsupported(["dictionary"])
        var p = ZstdCompressorParams()
        if let v = obj.optional("compression_level") { p.level = Int32(clamping: try v.uint32()) }
        p.enableChecksum = try obj.optional("enable_checksum")?.bool() ?? false
        if let v = obj.optional("strategy") {
            let strategies: [(String, Int32)] = [
                ("DEFAULT", 0), ("FAST", 1), ("DFAST", 2), ("GREEDY", 3), ("LAZY", 4), ("LAZY2", 5), ("BTLAZY2", 6),
                ("BTOPT", 7), ("BTULTRA", 8), ("BTULTRA2", 9),
            ]
            p.strategy = try v.protoEnum(strategies)
        }
        if let v = obj.optional("chunk_size") { p.chunkSize = Int(try v.int(min: 4096, max: 65536)) }
        return p
    }
}

/// `decompressor_library` of a decompressor filter.
struct DecompressorLibrary: Sendable {
    enum Kind: Sendable {
        case gzip(GzipDecompressorParams)
        case brotli(BrotliDecompressorParams)
        case zstd(ZstdDecompressorParams)
    }

    var name: String
    var kind: Kind

    static let gzipType = "type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip"
    static let brotliType = "type.googleapis.com/envoy.extensions.compression.brotli.decompressor.v3.Brotli"
    static let zstdType = "type.googleapis.com/envoy.extensions.compression.zstd.decompressor.v3.Zstd"

    var algorithm: CompressionAlgorithm {
        switch kind {
        case .gzip: .gzip
        case .brotli: .brotli
        case .zstd: .zstd
        }
    }

    /// The `content-encoding` token this library removes.
    var contentEncoding: String { algorithm.contentEncoding }
    var statName: String { algorithm.statName }

    static func decode(_ value: ConfigValue) throws -> DecompressorLibrary {
        let obj = try value.object()
        // Part of the decompressor's trailer names (x-envoy-decompressor-<name>-compressed-bytes).
        let name = try obj.required("name").headerNameText()
        let typed = try obj.required("typed_config").object()
        let typeValue = try typed.required("@type")
        let kind: Kind
        switch try typeValue.string() {
        case gzipType: kind = .gzip(try GzipDecompressorParams.decode(typed))
        case brotliType: kind = .brotli(try BrotliDecompressorParams.decode(typed))
        case zstdType: kind = .zstd(try ZstdDecompressorParams.decode(typed))
        case let other:
            throw typeValue.error("decompressor library \(other) is not supported; supported: "
                + [gzipType, brotliType, zstdType].joined(separator: ", "))
        }
        try typed.finish()
        try obj.finish()
        return DecompressorLibrary(name: name, kind: kind)
    }
}

struct GzipDecompressorParams: Sendable {
    var windowBits: Int32 = 15
    var chunkSize = 4096
    var maxInflateRatio = 100

    static func decode(_ obj: ConfigObject) throws -> GzipDecompressorParams {
        var p = GzipDecompressorParams()
        if let v = obj.optional("window_bits") { p.windowBits = Int32(try v.int(min: 9, max: 15)) }
        if let v = obj.optional("chunk_size") { p.chunkSize = Int(try v.int(min: 4096, max: 65536)) }
        if let v = obj.optional("max_inflate_ratio") { p.maxInflateRatio = Int(try v.int(min: 1, max: 1032)) }
        return p
    }
}

struct BrotliDecompressorParams: Sendable {
    var disableRingBufferReallocation = false
    var chunkSize = 4096

    static func decode(_ obj: ConfigObject) throws -> BrotliDecompressorParams {
        var p = BrotliDecompressorParams()
        p.disableRingBufferReallocation = try obj.optional("disable_ring_buffer_reallocation")?.bool() ?? false
        if let v = obj.optional("chunk_size") { p.chunkSize = Int(try v.int(min: 4096, max: 65536)) }
        return p
    }
}

struct ZstdDecompressorParams: Sendable {
    var chunkSize = 4096

    static func decode(_ obj: ConfigObject) throws -> ZstdDecompressorParams {
        try obj.unsupported(["dictionaries"])
        var p = ZstdDecompressorParams()
        if let v = obj.optional("chunk_size") { p.chunkSize = Int(try v.int(min: 4096, max: 65536)) }
        return p
    }
}

// MARK: Decompressor library stats

/// `<prefix>.decompressor_library.zlib_*`: one counter per zlib error code.
struct GzipDecompressorStats: Sendable {
    let errno, streamError, dataError, memError, bufError, versionError: Int

    func slot(forZlibError rc: Int32) -> Int {
        switch rc {
        case Z_ERRNO: errno
        case Z_STREAM_ERROR: streamError
        case Z_MEM_ERROR: memError
        case Z_BUF_ERROR: bufError
        case Z_VERSION_ERROR: versionError
        default: dataError
        }
    }
}

struct BrotliDecompressorStats: Sendable {
    let error, outputOverflow, redundantInput: Int
}

struct ZstdDecompressorStats: Sendable {
    let genericError, dictionaryError, checksumWrongError, memoryError: Int

    func slot(forError code: ZSTD_ErrorCode) -> Int {
        switch code {
        case ZSTD_error_memory_allocation: memoryError
        case ZSTD_error_dictionary_corrupted, ZSTD_error_dictionary_wrong: dictionaryError
        case ZSTD_error_checksum_wrong: checksumWrongError
        default: genericError
        }
    }
}

/// A decompressor library with its stats registered: makes one decompressor per stream direction.
enum DecompressorFactory: Sendable {
    case gzip(GzipDecompressorParams, GzipDecompressorStats)
    case brotli(BrotliDecompressorParams, BrotliDecompressorStats)
    case zstd(ZstdDecompressorParams, ZstdDecompressorStats)

    /// Registers the library's counters under `prefix` (`http.<hcm>.decompressor.<name>.<lib>.decompressor_library.`).
    /// Envoy creates them with the first decompressor; here they exist from the start and are shown once non-zero.
    init(_ library: DecompressorLibrary, prefix: String, registry r: StatsRegistry, label: (String, String),
         family: String) {
        func reg(_ s: String) -> Int {
            // Shared with another filter naming the same library alike, as in Envoy's store.
            if let slot = r.slot(named: prefix + s) { return slot }
            return r.register(prefix + s, .counter, family: family + s, labels: [label], lazy: true)
        }
        switch library.kind {
        case .gzip(let p):
            self = .gzip(p, GzipDecompressorStats(
                errno: reg("zlib_errno"), streamError: reg("zlib_stream_error"), dataError: reg("zlib_data_error"),
                memError: reg("zlib_mem_error"), bufError: reg("zlib_buf_error"),
                versionError: reg("zlib_version_error")))
        case .brotli(let p):
            self = .brotli(p, BrotliDecompressorStats(
                error: reg("brotli_error"), outputOverflow: reg("brotli_output_overflow"),
                redundantInput: reg("brotli_redundant_input")))
        case .zstd(let p):
            self = .zstd(p, ZstdDecompressorStats(
                genericError: reg("zstd_generic_error"), dictionaryError: reg("zstd_dictionary_error"),
                checksumWrongError: reg("zstd_checksum_wrong_error"), memoryError: reg("zstd_memory_error")))
        }
    }

    func make() -> any StreamDecompressor {
        switch self {
        case .gzip(let p, let s): GzipDecompressor(p, stats: s)
        case .brotli(let p, let s): BrotliDecompressor(p, stats: s)
        case .zstd(let p, let s): ZstdDecompressor(p, stats: s)
        }
    }
}

extension ConfigValue {
    /// A protobuf enum field: its name, or its number (as protobuf's JSON parser accepts).
    func protoEnum(_ values: [(String, Int32)]) throws -> Int32 {
        let text = try string()
        if let v = values.first(where: { $0.0 == text }) { return v.1 }
        if let n = Int32(text), values.contains(where: { $0.1 == n }) { return n }
        throw error("unknown value '\(text)'; expected one of: " + values.map(\.0).joined(separator: ", "))
    }
}
