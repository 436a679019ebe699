import NIOCore

/// A protobuf `Duration`, kept as nanoseconds.
public struct ProtoDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func seconds(_ s: Int64) -> ProtoDuration { ProtoDuration(nanoseconds: s * 1_000_000_000) }
    public static func milliseconds(_ ms: Int64) -> ProtoDuration { ProtoDuration(nanoseconds: ms * 1_000_000) }

    /// Parses the canonical JSON form: decimal seconds with an `s` suffix ("15s", "0.25s", "1.000340012s").
    public init?(parsing text: String) {
        guard text.hasSuffix("s") else { return nil }
        let number = text.dropLast()
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let isDigit: (Character) -> Bool = { $0.isASCII && $0.isNumber }
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(isDigit), let secs = Int64(whole) else {
            return nil
        }
        var nanos: Int64 = 0
        if parts.count == 2 {
            let frac = parts[1]
            guard !frac.isEmpty, frac.count <= 9, frac.allSatisfy(isDigit),
                  let n = Int64(frac + String(repeating: "0", count: 9 - frac.count)) else { return nil }
            nanos = n
        }
        guard secs <= 315_576_000_000 else { return nil }
        self.nanoseconds = secs * 1_000_000_000 + nanos
    }

    public var milliseconds: Int64 { nanoseconds / 1_000_000 }
    public var timeAmount: TimeAmount { .nanoseconds(nanoseconds) }
    public var isZero: Bool { nanoseconds == 0 }

    public static func < (a: ProtoDuration, b: ProtoDuration) -> Bool { a.nanoseconds < b.nanoseconds }

    /// The canonical JSON form, as `/config_dump` prints it.
    public var description: String {
        let secs = nanoseconds / 1_000_000_000
        let frac = nanoseconds % 1_000_000_000
        if frac == 0 { return "\(secs)s" }
        var f = String(frac)
        f = String(repeating: "0", count: 9 - f.count) + f
        while f.hasSuffix("0") { f.removeLast() }
        return "\(secs).\(f)s"
    }
}
