/// xxHash64 (Yann Collet's XXH64), the hash Envoy uses for request hash keys (`HashUtil::xxHash64`, seed 0)
/// and for placing hosts on ring-hash rings and Maglev tables. Matching it bit for bit is what makes a
/// given header value land on the same host here as it would behind Envoy.
package enum XXHash64 {
    private static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let prime5: UInt64 = 0x27D4_EB2F_1656_67C5

    /// The hash of `bytes`. Contiguous collections (arrays, `String.UTF8View` of native strings) are hashed
    /// in place; others are copied once.
    package static func hash(_ bytes: some Collection<UInt8>, seed: UInt64 = 0) -> UInt64 {
        if let h = bytes.withContiguousStorageIfAvailable({ hash(UnsafeRawBufferPointer($0), seed: seed) }) {
            return h
        }
        return Array(bytes).withUnsafeBytes { hash($0, seed: seed) }
    }

    /// The hash of a string's UTF-8 bytes, as Envoy hashes an `absl::string_view`.
    package static func hash(_ string: String, seed: UInt64 = 0) -> UInt64 {
        var s = string
        return s.withUTF8 { hash(UnsafeRawBufferPointer($0), seed: seed) }
    }

    package static func hash(_ input: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let length = input.count
        var p = 0
        var h: UInt64
        if length >= 32 {
            var v1 = seed &+ prime1 &+ prime2
            var v2 = seed &+ prime2
            var v3 = seed
            var v4 = seed &- prime1
            while p + 32 <= length {
                v1 = round(v1, lane(input, p))
                v2 = round(v2, lane(input, p + 8))
                v3 = round(v3, lane(input, p + 16))
                v4 = round(v4, lane(input, p + 24))
                p += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(h, v1)
            h = merge(h, v2)
            h = merge(h, v3)
            h = merge(h, v4)
        } else {
            h = seed &+ prime5
        }
        h &+= UInt64(length)
        while p + 8 <= length {
            h ^= round(0, lane(input, p))
            h = rotl(h, 27) &* prime1 &+ prime4
            p += 8
        }
        if p + 4 <= length {
            h ^= UInt64(UInt32(littleEndian: input.loadUnaligned(fromByteOffset: p, as: UInt32.self))) &* prime1
            h = rotl(h, 23) &* prime2 &+ prime3
            p += 4
        }
        while p < length {
            h ^= UInt64(input[p]) &* prime5
            h = rotl(h, 11) &* prime1
            p += 1
        }
        h ^= h >> 33
        h &*= prime2
        h ^= h >> 29
        h &*= prime3
        h ^= h >> 32
        return h
    }

    @inline(__always)
    private static func lane(_ input: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: input.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always)
    private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* prime2, 31) &* prime1
    }

    @inline(__always)
    private static func merge(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* prime1 &+ prime4
    }
}
