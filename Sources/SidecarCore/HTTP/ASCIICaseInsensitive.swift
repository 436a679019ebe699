/// Header names (and tokens) compare without regard to ASCII case. Inlinable and generic: callers in other
/// modules get it specialised (an unspecialised generic call per header cost a hundred times the comparison).
/// Native strings compare over their bytes in place; others byte by byte through their views.
@inlinable
package func equalsIgnoringASCIICase<A: StringProtocol, B: StringProtocol>(_ a: A, _ b: B) -> Bool {
    guard a.utf8.count == b.utf8.count else { return false }
    let contiguous = a.utf8.withContiguousStorageIfAvailable { x in
        b.utf8.withContiguousStorageIfAvailable { y in
            for i in 0..<x.count where !sameIgnoringASCIICase(x[i], y[i]) { return false }
            return true
        }
    }
    if let contiguous, let result = contiguous { return result }
    for (x, y) in zip(a.utf8, b.utf8) where !sameIgnoringASCIICase(x, y) { return false }
    return true
}

/// Two bytes are the same letter in either case, or the same byte.
@inlinable
package func sameIgnoringASCIICase(_ x: UInt8, _ y: UInt8) -> Bool {
    if x == y { return true }
    let lower = x | 0x20
    return lower == y | 0x20 && lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z")
}
