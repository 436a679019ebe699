/// The names of a run of stats registered together (`StatsRegistry.register(_:prefix:labels:)`): made once, as a
/// static, and shared by every owner that registers it, so that a thousand clusters keep one copy of their stats'
/// names, kinds and families instead of a thousand.
///
/// Two forms: named stats (`suffix`, `kind`), each with the Prometheus family `familyPrefix` + suffix; or lazy
/// counters numbered by `numbers` (`namePrefix` + n + `nameSuffix`, e.g. `upstream_rq_503`, `upstream_rq_5xx`),
/// of one family with the number as the label `labelName`, shown once non-zero (Envoy creates them on first use).
public final class SlotLayout: Sendable {
    private enum Naming: Sendable {
        /// `families` nil: each stat's family is its full name.
        case suffixes([String], kinds: [StatsRegistry.Kind], families: [String]?)
        case numbers([Int], namePrefix: String, nameSuffix: String, family: String, labelName: String)
    }

    private let naming: Naming
    /// Stats in the run.
    public let count: Int
    /// Shown only when non-zero.
    public let lazy: Bool

    /// `familyPrefix` nil: each stat's Prometheus family is its full name, without labels.
    public init(stats: [(suffix: String, kind: StatsRegistry.Kind)], familyPrefix: String?) {
        precondition(!stats.isEmpty)
        naming = .suffixes(stats.map(\.suffix), kinds: stats.map(\.kind),
                           families: familyPrefix.map { p in stats.map { p + $0.suffix } })
        count = stats.count
        lazy = false
    }

    public init(numbers: [Int], namePrefix: String, nameSuffix: String = "", family: String, labelName: String) {
        precondition(!numbers.isEmpty)
        naming = .numbers(numbers, namePrefix: namePrefix, nameSuffix: nameSuffix, family: family, labelName: labelName)
        count = numbers.count
        lazy = true
    }

    /// Stat `k`'s name after the owner's prefix.
    func suffix(_ k: Int) -> String {
        switch naming {
        case .suffixes(let suffixes, _, _): return suffixes[k]
        case .numbers(let numbers, let namePrefix, let nameSuffix, _, _): return namePrefix + String(numbers[k]) + nameSuffix
        }
    }

    func kind(_ k: Int) -> StatsRegistry.Kind {
        if case .suffixes(_, let kinds, _) = naming { return kinds[k] }
        return .counter
    }

    /// Stat `k`'s Prometheus family, and its labels: the number's (if numbered), then the owner's `labels`.
    func family(_ k: Int, prefix: String, labels: [(String, String)]) -> (family: String, labels: [(String, String)]) {
        switch naming {
        case .suffixes(let suffixes, _, let families): return (families?[k] ?? prefix + suffixes[k], labels)
        case .numbers(let numbers, _, _, let family, let labelName): return (family, [(labelName, String(numbers[k]))] + labels)
        }
    }

    /// The place of the stat whose name after the owner's prefix is `name`.
    func index(of name: Substring) -> Int? {
        switch naming {
        case .suffixes(let suffixes, _, _):
            return suffixes.firstIndex { $0 == name }
        case .numbers(let numbers, let namePrefix, let nameSuffix, _, _):
            guard name.hasPrefix(namePrefix), name.hasSuffix(nameSuffix),
                  name.count > namePrefix.count + nameSuffix.count else { return nil }
            let digits = name.dropFirst(namePrefix.count).dropLast(nameSuffix.count)
            guard let n = Int(digits), String(n) == digits else { return nil }
            return numbers.firstIndex(of: n)
        }
    }
}
