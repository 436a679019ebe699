/// A fast per-worker random source (xorshift128+), seeded from the system. Not for secrets: it makes
/// request ids and load-balancing choices.
package struct FastRandom {
    @usableFromInline internal var s0: UInt64
    @usableFromInline internal var s1: UInt64

    package init() {
        var g = SystemRandomNumberGenerator()
        s0 = g.next() | 1
        s1 = g.next()
    }

    /// Inlinable: the filters, the load balancer and the request id draw from it per request, from other targets.
    @inlinable package mutating func next() -> UInt64 {
        var x = s0
        let y = s1
        s0 = y
        x ^= x << 23
        s1 = x ^ y ^ (x >> 17) ^ (y >> 26)
        return s1 &+ y
    }

    /// A version-4 UUID's random bits, its version and variant bits set.
    package struct UUIDBits: Sendable {
        package var high: UInt64
        package var low: UInt64

        /// Envoy's `UUIDRequestIDExtension::modBy(10000)`: the first eight hex digits as a number, modulo 10,000.
        package var modulo10000: UInt64 { (high >> 32) % 10_000 }
    }

    package mutating func uuidBits() -> UUIDBits {
        UUIDBits(high: (next() & ~(0xF << 12)) | (0x4 << 12), low: (next() & ~(0xC << 60)) | (0x8 << 60))
    }

    /// A version-4 UUID in its 36-character text form, as Envoy's `x-request-id`.
    package mutating func uuid() -> String {
        Self.uuid(uuidBits())
    }

    /// `bits` as 8-4-4-4-12 lower-case hex digits; `version`, when given, is the character written in the version
    /// position (Envoy keeps its tracing decision there: `9`, `a`, `b`).
    package static func uuid(_ bits: UUIDBits, version: UInt8? = nil) -> String {
        ShortASCII.make(count: 36) { out in
            let dash = UInt8(ascii: "-")
            var o = 0
            for i in 0..<16 {
                if i == 8 || i == 12 { out[o] = dash; o += 1 }
                out[o] = ShortASCII.hexDigit(bits.high >> UInt64(60 - 4 * i))
                o += 1
            }
            for i in 0..<16 {
                if i == 0 || i == 4 { out[o] = dash; o += 1 }
                out[o] = ShortASCII.hexDigit(bits.low >> UInt64(60 - 4 * i))
                o += 1
            }
            if let version { out[14] = version }
        }
    }
}
