/// A configuration problem, located by its field path and, for YAML and JSON files, its line.
///
/// Every rejection names where it is, so a user never has to guess which of a hundred lines is wrong.
///
/// Decoding goes on past a problem where it can (see `ConfigSession`), so one error can carry the others found in
/// the same document: `path`, `line` and `message` are the first of them by line, `others` the rest.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var line: Int?
    public var message: String
    /// Further problems in the same document, sorted by line; empty when there is only this one.
    public var others: [ConfigError] = []

    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    /// Several problems as one error: sorted by line (problems without a line last), duplicates dropped.
    package init(collecting errors: [ConfigError]) {
        let sorted = ConfigError.sortedByLine(errors.flatMap(\.all))
        precondition(!sorted.isEmpty, "ConfigError(collecting:) needs at least one error")
        self = sorted[0]
        others = Array(sorted.dropFirst())
    }

    /// Every problem this error stands for, each on its own (without `others`), sorted by line.
    public var all: [ConfigError] {
        var first = self
        first.others = []
        return [first] + others.flatMap(\.all)
    }

    /// One problem: `path (line N): message`.
    package var single: String {
        let location = path.isEmpty ? "<root>" : path
        if let line { return "\(location) (line \(line)): \(message)" }
        return "\(location): \(message)"
    }

    /// The first problem as `path (line N): message`, and each further one on a line of its own.
    public var description: String {
        all.map(\.single).joined(separator: "\n")
    }

    package static func sortedByLine(_ errors: [ConfigError]) -> [ConfigError] {
        var seen = Set<String>()
        let unique = errors.filter { seen.insert("\($0.path)\u{0}\($0.message)").inserted }
        // Stable: problems on the same line keep the order they were found in.
        return unique.enumerated().sorted { a, b in
            switch (a.element.line, b.element.line) {
            case let (x?, y?) where x != y: return x < y
            case (nil, _?): return false
            case (_?, nil): return true
            default: return a.offset < b.offset
            }
        }.map(\.element)
    }
}
