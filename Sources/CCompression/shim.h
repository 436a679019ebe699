// zlib, brotli and zstd, for the compressor and decompressor HTTP filters.
#ifndef PILOTFISH_CCOMPRESSION_SHIM_H
#define PILOTFISH_CCOMPRESSION_SHIM_H

#include <zlib.h>
#include <brotli/encode.h>
#include <brotli/decode.h>
#include <zstd.h>
#include <zstd_errors.h>

// deflateInit2 and inflateInit2 are macros (they pass the library version and the stream size), which Swift
// cannot call.
static inline int pf_deflate_init2(z_streamp strm, int level, int window_bits, int mem_level, int strategy) {
    return deflateInit2(strm, level, Z_DEFLATED, window_bits, mem_level, strategy);
}

static inline int pf_inflate_init2(z_streamp strm, int window_bits) {
    return inflateInit2(strm, window_bits);
}

#endif
