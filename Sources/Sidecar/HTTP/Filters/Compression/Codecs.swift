import Atomics
import CCompression
import NIOCore
import SidecarCore

/// How many codec handles (zlib streams, brotli and zstd contexts) are alive in the process: each compressor and
/// decompressor owns one from `init` to `deinit`. Tests check that it falls back once streams are over.
enum CompressionHandles {
    static let live = ManagedAtomic<Int>(0)
    static func opened() { live.wrappingIncrement(ordering: .relaxed) }
    static func closed() { live.wrappingDecrement(ordering: .relaxed) }
}

/// Compresses one direction of one stream: Envoy's `Compression::Compressor`. Each instance owns its C handle
/// and frees it in `deinit`; a stream's filter holds it only while that stream lasts.
protocol StreamCompressor: AnyObject {
    /// Compresses every readable byte of `input` and returns what the codec produced. `finish`: the stream ends
    /// here, the codec's trailer follows. Otherwise gzip and brotli flush, so every byte taken comes out now (Envoy's
    /// `State::Flush`); zstd, as in Envoy, only continues its frame and gives out whole blocks.
    func compress(_ input: ByteBuffer, finish: Bool) -> ByteBuffer
}

/// Decompresses one direction of one stream: Envoy's `Compression::Decompressor`. Errors are counted in the
/// library's stats and end the output of that call (Envoy forwards what came out so far).
protocol StreamDecompressor: AnyObject {
    func decompress(_ input: ByteBuffer, stats: WorkerStats) -> ByteBuffer
}

// MARK: gzip (zlib)

/// `envoy.compression.gzip.compressor`: zlib's deflate with a gzip wrapper, a sync flush per chunk.
final class GzipCompressor: StreamCompressor {
    private let stream: UnsafeMutablePointer<z_stream>
    private let chunkSize: Int

    init(_ p: GzipCompressorParams) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        chunkSize = p.chunkSize
        // Parameters were validated with the config, so only an allocation can fail here.
        let rc = pf_deflate_init2(stream, p.level, p.windowBits | 16, p.memoryLevel, p.strategy)
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
        CompressionHandles.opened()
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        CompressionHandles.closed()
    }

    func compress(_ input: ByteBuffer, finish: Bool) -> ByteBuffer {
        var out = ByteBuffer()
        let flush = finish ? Z_FINISH : Z_SYNC_FLUSH
        input.withUnsafeReadableBytes { raw in
            // zlib never writes through next_in (z_const).
            stream.pointee.next_in = raw.baseAddress.map {
                UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self))
            }
            stream.pointee.avail_in = uInt(raw.count)
            while true {
                var rc = Z_OK
                out.writeWithUnsafeMutableBytes(minimumWritableBytes: chunkSize) { dst in
                    stream.pointee.next_out = dst.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_out = uInt(chunkSize)
                    rc = deflate(stream, flush)
                    return chunkSize - Int(stream.pointee.avail_out)
                }
                // A full output chunk means zlib may hold more; otherwise it took all the input and flushed.
                if stream.pointee.avail_out != 0 || rc == Z_STREAM_END || rc == Z_STREAM_ERROR { break }
            }
            stream.pointee.next_in = nil
            stream.pointee.avail_in = 0
        }
        return out
    }
}

/// `envoy.compression.gzip.decompressor`: zlib's inflate for gzip (window bits | 16), with Envoy's bomb
/// protection: one call may give out at most `max_inflate_ratio` times its input.
final class GzipDecompressor: StreamDecompressor {
    private let stream: UnsafeMutablePointer<z_stream>
    private let chunkSize: Int
    private let maxInflateRatio: Int
    private let stats: GzipDecompressorStats

    init(_ p: GzipDecompressorParams, stats: GzipDecompressorStats) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        chunkSize = p.chunkSize
        maxInflateRatio = p.maxInflateRatio
        self.stats = stats
        let rc = pf_inflate_init2(stream, p.windowBits | 16)
        precondition(rc == Z_OK, "inflateInit2 failed: \(rc)")
        CompressionHandles.opened()
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        CompressionHandles.closed()
    }

    func decompress(_ input: ByteBuffer, stats worker: WorkerStats) -> ByteBuffer {
        var out = ByteBuffer()
        guard input.readableBytes > 0 else { return out }
        let limit = maxInflateRatio * input.readableBytes
        input.withUnsafeReadableBytes { raw in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(raw.count)
            while true {
                var rc = Z_OK
                out.writeWithUnsafeMutableBytes(minimumWritableBytes: chunkSize) { dst in
                    stream.pointee.next_out = dst.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_out = uInt(chunkSize)
                    rc = inflate(stream, Z_NO_FLUSH)
                    return chunkSize - Int(stream.pointee.avail_out)
                }
                if rc == Z_STREAM_END { break }
                // Z_BUF_ERROR without input left: zlib wants more, not an error.
                if rc == Z_BUF_ERROR && stream.pointee.avail_in == 0 { break }
                if rc < 0 {
                    worker.inc(stats.slot(forZlibError: rc))
                    break
                }
                if out.readableBytes > limit {
                    // Envoy's compression bomb protection: the rest of this input is dropped.
                    worker.inc(stats.dataError)
                    break
                }
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out != 0 { break }
            }
            stream.pointee.next_in = nil
            stream.pointee.avail_in = 0
        }
        return out
    }
}

// MARK: brotli

/// `envoy.compression.brotli.compressor`: the encoder processes each chunk, then flushes (or finishes).
final class BrotliCompressor: StreamCompressor {
    private let state: OpaquePointer
    private let chunkSize: Int

    init(_ p: BrotliCompressorParams) {
        state = BrotliEncoderCreateInstance(nil, nil, nil)!
        chunkSize = p.chunkSize
        BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, p.quality)
        BrotliEncoderSetParameter(state, BROTLI_PARAM_LGWIN, p.windowBits)
        BrotliEncoderSetParameter(state, BROTLI_PARAM_LGBLOCK, p.inputBlockBits)
        BrotliEncoderSetParameter(state, BROTLI_PARAM_DISABLE_LITERAL_CONTEXT_MODELING,
                                  p.disableLiteralContextModeling ? 1 : 0)
        BrotliEncoderSetParameter(state, BROTLI_PARAM_MODE, p.mode)
        CompressionHandles.opened()
    }

    deinit {
        BrotliEncoderDestroyInstance(state)
        CompressionHandles.closed()
    }

    func compress(_ input: ByteBuffer, finish: Bool) -> ByteBuffer {
        var out = ByteBuffer()
        input.withUnsafeReadableBytes { raw in
            var nextIn = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            var availIn = raw.count
            while availIn > 0 {
                step(BROTLI_OPERATION_PROCESS, &nextIn, &availIn, &out)
            }
            let op = finish ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_FLUSH
            repeat {
                step(op, &nextIn, &availIn, &out)
            } while BrotliEncoderHasMoreOutput(state) == BROTLI_TRUE
                || (finish && BrotliEncoderIsFinished(state) == BROTLI_FALSE)
        }
        return out
    }

    private func step(_ op: BrotliEncoderOperation, _ nextIn: inout UnsafePointer<UInt8>?, _ availIn: inout Int,
                      _ out: inout ByteBuffer) {
        var ok = BROTLI_TRUE
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: chunkSize) { dst in
            var nextOut: UnsafeMutablePointer<UInt8>? = dst.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var availOut = chunkSize
            ok = BrotliEncoderCompressStream(state, op, &availIn, &nextIn, &availOut, &nextOut, nil)
            return chunkSize - availOut
        }
        // Only a misuse of the API fails; the parameters were validated with the config.
        precondition(ok == BROTLI_TRUE, "BrotliEncoderCompressStream failed")
    }
}

/// `envoy.compression.brotli.decompressor`, with Envoy's fixed bomb protection (at most 100 times the input
/// per call) and its handling of input after the end of the stream (an error).
final class BrotliDecompressor: StreamDecompressor {
    private let state: OpaquePointer
    private let chunkSize: Int
    private let stats: BrotliDecompressorStats
    static let maxInflateRatio = 100

    init(_ p: BrotliDecompressorParams, stats: BrotliDecompressorStats) {
        state = BrotliDecoderCreateInstance(nil, nil, nil)!
        chunkSize = p.chunkSize
        self.stats = stats
        BrotliDecoderSetParameter(state, BROTLI_DECODER_PARAM_DISABLE_RING_BUFFER_REALLOCATION,
                                  p.disableRingBufferReallocation ? 1 : 0)
        CompressionHandles.opened()
    }

    deinit {
        BrotliDecoderDestroyInstance(state)
        CompressionHandles.closed()
    }

    /// Envoy's output chunk: filled by the decoder, moved to the output when full (and at the end).
    private struct Chunk {
        var bytes: [UInt8]
        var used = 0
    }

    func decompress(_ input: ByteBuffer, stats worker: WorkerStats) -> ByteBuffer {
        var out = ByteBuffer()
        let limit = Self.maxInflateRatio * input.readableBytes
        var chunk = Chunk(bytes: [UInt8](repeating: 0, count: chunkSize))
        input.withUnsafeReadableBytes { raw in
            var nextIn = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            var availIn = raw.count
            while availIn > 0 {
                if !process(&nextIn, &availIn, &chunk, &out, limit, worker) { return }
            }
            // The input is consumed but the decoder may still hold output.
            var more = true
            while more {
                more = process(&nextIn, &availIn, &chunk, &out, limit, worker)
                    && BrotliDecoderHasMoreOutput(state) == BROTLI_TRUE
            }
        }
        if chunk.used > 0 { out.writeBytes(chunk.bytes[0..<chunk.used]) }
        return out
    }

    private func process(_ nextIn: inout UnsafePointer<UInt8>?, _ availIn: inout Int, _ chunk: inout Chunk,
                         _ out: inout ByteBuffer, _ limit: Int, _ worker: WorkerStats) -> Bool {
        var availOut = chunkSize - chunk.used
        let result = chunk.bytes.withUnsafeMutableBufferPointer { buf -> BrotliDecoderResult in
            var nextOut: UnsafeMutablePointer<UInt8>? = buf.baseAddress! + chunk.used
            return BrotliDecoderDecompressStream(state, &availIn, &nextIn, &availOut, &nextOut, nil)
        }
        chunk.used = chunkSize - availOut
        switch result {
        case BROTLI_DECODER_RESULT_ERROR:
            worker.inc(stats.error)
            return false
        case BROTLI_DECODER_RESULT_SUCCESS where availIn > 0:
            worker.inc(stats.error)
            worker.inc(stats.redundantInput)
            return false
        default:
            if out.readableBytes > limit {
                worker.inc(stats.error)
                worker.inc(stats.outputOverflow)
                return false
            }
            if chunk.used == chunkSize {
                out.writeBytes(chunk.bytes)
                chunk.used = 0
            }
            return true
        }
    }
}

// MARK: zstd

/// `envoy.compression.zstd.compressor`. As in Envoy, a chunk only continues the frame (`ZSTD_e_continue`): zstd
/// gives out whole blocks as they fill, and the rest at the end of the stream.
final class ZstdCompressor: StreamCompressor {
    private let cctx: OpaquePointer
    private let chunkSize: Int

    init(_ p: ZstdCompressorParams) {
        cctx = ZSTD_createCCtx()!
        chunkSize = p.chunkSize
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, p.enableChecksum ? 1 : 0)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_strategy, p.strategy)
        // Levels above zstd's maximum are clamped by the library, as in Envoy.
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, p.level)
        CompressionHandles.opened()
    }

    deinit {
        ZSTD_freeCCtx(cctx)
        CompressionHandles.closed()
    }

    func compress(_ input: ByteBuffer, finish: Bool) -> ByteBuffer {
        var out = ByteBuffer()
        input.withUnsafeReadableBytes { raw in
            var inBuf = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
            if raw.count > 0 {
                repeat {
                    _ = step(&inBuf, ZSTD_e_continue, &out)
                } while inBuf.pos < inBuf.size
            }
            if finish {
                while step(&inBuf, ZSTD_e_end, &out) != 0 {}
            }
        }
        return out
    }

    private func step(_ inBuf: inout ZSTD_inBuffer, _ mode: ZSTD_EndDirective, _ out: inout ByteBuffer) -> Int {
        var remaining = 0
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: chunkSize) { dst in
            var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: chunkSize, pos: 0)
            remaining = ZSTD_compressStream2(cctx, &outBuf, &inBuf, mode)
            return outBuf.pos
        }
        precondition(ZSTD_isError(remaining) == 0, "ZSTD_compressStream2 failed")
        return remaining
    }
}

/// `envoy.compression.zstd.decompressor`, with Envoy's bomb protection: output over 100 times the input of a call
/// counts `zstd_generic_error` (Envoy checks after the call's input was processed, so the output stands).
///
/// As in Envoy, zstd is called while input is left; what it may still hold once it took the last input byte is not
/// asked for. How much that is depends on the zstd release: Envoy 1.40's passes 131072 of 200000 zero bytes
/// compressed to 27, Debian's libzstd 1.5.4 all of them (both count the bomb).
final class ZstdDecompressor: StreamDecompressor {
    private let dctx: OpaquePointer
    private let chunkSize: Int
    private let stats: ZstdDecompressorStats
    static let maxInflateRatio = 100

    init(_ p: ZstdDecompressorParams, stats: ZstdDecompressorStats) {
        dctx = ZSTD_createDCtx()!
        chunkSize = p.chunkSize
        self.stats = stats
        CompressionHandles.opened()
    }

    deinit {
        ZSTD_freeDCtx(dctx)
        CompressionHandles.closed()
    }

    func decompress(_ input: ByteBuffer, stats worker: WorkerStats) -> ByteBuffer {
        var out = ByteBuffer()
        guard input.readableBytes > 0 else { return out }
        let limit = Self.maxInflateRatio * input.readableBytes
        input.withUnsafeReadableBytes { raw in
            var inBuf = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
            while inBuf.pos < inBuf.size {
                var result = 0
                out.writeWithUnsafeMutableBytes(minimumWritableBytes: chunkSize) { dst in
                    var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: chunkSize, pos: 0)
                    result = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                    return outBuf.pos
                }
                if ZSTD_isError(result) != 0 {
                    worker.inc(stats.slot(forError: ZSTD_getErrorCode(result)))
                    return
                }
            }
            if out.readableBytes > limit { worker.inc(stats.genericError) }
        }
        return out
    }
}
