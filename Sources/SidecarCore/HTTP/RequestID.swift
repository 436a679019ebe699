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

    /// A version-4 UUID in its 36-character text form, as Envoy's `x-request-id`.
    package mutating func uuid() -> String {
        let a = next()
        let b = next()
        // Hex digits computed, not looked up: a table as a local array was an allocation per request.
        return String(unsafeUninitializedCapacity: 36) { buf in
            var i = 0
            func put(_ nibble: UInt64) {
                let n = UInt8(truncatingIfNeeded: nibble & 0xF)
                buf[i] = n < 10 ? 48 &+ n : 87 &+ n
                i += 1
            }
            for n in 0..<32 {
                if n == 8 || n == 12 || n == 16 || n == 20 { buf[i] = UInt8(ascii: "-"); i += 1 }
                var nib = n < 16 ? (a >> UInt64(60 - n * 4)) : (b >> UInt64(60 - (n - 16) * 4))
                if n == 12 { nib = 4 }
                if n == 16 { nib = 8 | (nib & 3) }
                put(nib)
            }
            return 36
        }
    }
}
