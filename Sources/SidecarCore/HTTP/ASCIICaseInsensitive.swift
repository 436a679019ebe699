/// Header names compare without regard to ASCII case. Not generic, and inlinable: the proxy compares names per
/// request from other modules, where an unspecialised generic call costs a hundred times the comparison.
@inlinable
package func equalsIgnoringASCIICase(_ a: String, _ b: String) -> Bool {
    guard a.utf8.count == b.utf8.count else { return false }
    var a = a
    var b = b
    return a.withUTF8 { x in
        b.withUTF8 { y in
            for i in 0..<x.count where x[i] != y[i] {
                let lower = x[i] | 0x20
                guard lower == y[i] | 0x20, lower >= UInt8(ascii: "a"), lower <= UInt8(ascii: "z") else { return false }
            }
            return true
        }
    }
}
