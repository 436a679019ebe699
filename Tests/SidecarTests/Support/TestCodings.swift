import CCompression

/// gzip, brotli and zstd straight from the C libraries, independent of the filters under test: to make
/// compressed request bodies and to check compressed responses.
enum TestCodings {
    static func encode(_ encoding: String, _ input: [UInt8]) -> [UInt8] {
        switch encoding {
        case "gzip": return gzip(input)
        case "br": return brotli(input)
        case "zstd": return zstd(input)
        default: fatalError("unknown encoding \(encoding)")
        }
    }

    /// The decoded bytes, or nil when `input` is not one complete, valid stream.
    static func decode(_ encoding: String, _ input: [UInt8]) -> [UInt8]? {
        switch encoding {
        case "gzip": return gunzip(input)
        case "br": return unbrotli(input)
        case "zstd": return unzstd(input)
        default: return nil
        }
    }

    static func gzip(_ input: [UInt8]) -> [UInt8] {
        var zs = z_stream()
        precondition(pf_deflate_init2(&zs, 6, 15 | 16, 8, Z_DEFAULT_STRATEGY) == Z_OK)
        defer { deflateEnd(&zs) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&zs, uLong(input.count))) + 64)
        var input = input
        let produced = input.withUnsafeMutableBufferPointer { inBuf in
            out.withUnsafeMutableBufferPointer { outBuf -> Int in
                zs.next_in = inBuf.baseAddress
                zs.avail_in = uInt(inBuf.count)
                zs.next_out = outBuf.baseAddress
                zs.avail_out = uInt(outBuf.count)
                precondition(deflate(&zs, Z_FINISH) == Z_STREAM_END)
                return outBuf.count - Int(zs.avail_out)
            }
        }
        return Array(out[0..<produced])
    }

    static func gunzip(_ input: [UInt8]) -> [UInt8]? {
        var zs = z_stream()
        guard pf_inflate_init2(&zs, 15 | 16) == Z_OK else { return nil }
        defer { inflateEnd(&zs) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var input = input
        var rc = Z_OK
        input.withUnsafeMutableBufferPointer { inBuf in
            zs.next_in = inBuf.baseAddress
            zs.avail_in = uInt(inBuf.count)
            repeat {
                let n = chunk.withUnsafeMutableBufferPointer { c -> Int in
                    zs.next_out = c.baseAddress
                    zs.avail_out = uInt(c.count)
                    rc = inflate(&zs, Z_NO_FLUSH)
                    return c.count - Int(zs.avail_out)
                }
                out += chunk[0..<n]
            } while rc == Z_OK
        }
        return rc == Z_STREAM_END && zs.avail_in == 0 ? out : nil
    }

    static func brotli(_ input: [UInt8]) -> [UInt8] {
        var size = BrotliEncoderMaxCompressedSize(input.count) + 64
        var out = [UInt8](repeating: 0, count: size)
        let ok = BrotliEncoderCompress(5, 22, BROTLI_MODE_GENERIC, input.count, input, &size, &out)
        precondition(ok == BROTLI_TRUE)
        return Array(out[0..<size])
    }

    static func unbrotli(_ input: [UInt8]) -> [UInt8]? {
        guard let state = BrotliDecoderCreateInstance(nil, nil, nil) else { return nil }
        defer { BrotliDecoderDestroyInstance(state) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var result = BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT
        var availIn = input.count
        input.withUnsafeBufferPointer { inBuf in
            var nextIn = inBuf.baseAddress
            while result == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT
                || (result == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT && availIn > 0)
            {
                let n = chunk.withUnsafeMutableBufferPointer { c -> Int in
                    var nextOut = c.baseAddress
                    var availOut = c.count
                    result = BrotliDecoderDecompressStream(state, &availIn, &nextIn, &availOut, &nextOut, nil)
                    return c.count - availOut
                }
                out += chunk[0..<n]
            }
        }
        return result == BROTLI_DECODER_RESULT_SUCCESS && availIn == 0 ? out : nil
    }

    static func zstd(_ input: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let n = ZSTD_compress(&out, out.count, input, input.count, 3)
        precondition(ZSTD_isError(n) == 0)
        return Array(out[0..<n])
    }

    static func unzstd(_ input: [UInt8]) -> [UInt8]? {
        guard let dctx = ZSTD_createDCtx() else { return nil }
        defer { ZSTD_freeDCtx(dctx) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var last = 1
        var ok = true
        input.withUnsafeBytes { raw in
            var inBuf = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
            var full = false
            // Until the input is consumed and zstd owes no output; 0 with the input consumed ends the frame (asking
            // again would start a next frame).
            while (inBuf.pos < inBuf.size || full) && !(last == 0 && inBuf.pos == inBuf.size) {
                let n = chunk.withUnsafeMutableBytes { c -> Int in
                    var outBuf = ZSTD_outBuffer(dst: c.baseAddress, size: c.count, pos: 0)
                    last = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                    full = outBuf.pos == outBuf.size
                    return outBuf.pos
                }
                if ZSTD_isError(last) != 0 {
                    ok = false
                    return
                }
                out += chunk[0..<n]
            }
        }
        // 0: the frame is complete.
        return ok && last == 0 ? out : nil
    }

    /// Text-like bytes that compress but not trivially: words from a small vocabulary, picked by a fixed LCG
    /// from `seed`; the same (seed, offset) always gives the same bytes.
    static func text(count: Int, seed: UInt64 = 1) -> [UInt8] {
        let words: [[UInt8]] = ["envoy ", "sidecar ", "mesh ", "pilotfish ", "stream ", "chunk ", "gzip ", "brotli ",
                                "zstd ", "header ", "body ", "trailer ", "\n", "filter ", "route ", "cluster "].map { Array($0.utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(count + 16)
        var x = seed &* 6364136223846793005 &+ 1442695040888963407
        while out.count < count {
            x = x &* 6364136223846793005 &+ 1442695040888963407
            out += words[Int(x >> 60)]
            if x & 0xff < 8 { out += Array(String(x >> 40).utf8) }
        }
        return Array(out[0..<count])
    }
}
