/// Where the upstream machinery gets its chance from, so tests can script it.
package protocol RandomSource { mutating func next() -> UInt64 }
extension FastRandom: RandomSource {}
/// A scripted source for tests and for reproducible runs: returns `values` in a cycle.
package struct ScriptedRandom: RandomSource { var values: [UInt64]; var i = 0
    package init(_ values: [UInt64]) { self.values = values }
    package mutating func next() -> UInt64 { defer { i = (i + 1) % values.count }; return values[i] } }
