/// Header names (and tokens) compare without regard to ASCII case. Inlinable and generic: callers in other
/// modules get it specialised (an unspecialised generic call per header cost a hundred times the comparison).
@inlinable
package func equalsIgnoringASCIICase<A: StringProtocol, B: StringProtocol>(_ a: A, _ b: B) -> Bool {
    guard a.utf8.count == b.utf8.count else { return false }
    for (x, y) in zip(a.utf8, b.utf8) where x != y {
        let lower = x | 0x20
        guard lower == y | 0x20, lower >= UInt8(ascii: "a"), lower <= UInt8(ascii: "z") else { return false }
    }
    return true
}
