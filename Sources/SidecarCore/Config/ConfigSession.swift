import Yams

/// One decoding pass over a config document, shared by every `ConfigValue` and `ConfigObject` read from it.
///
/// It does two things for error reports:
///
/// - **Unknown fields first.** When any error is raised while mappings are still being decoded, the fields of
///   those mappings that their message does not have (`ConfigFields`) are reported instead: a typo usually
///   causes what follows (`prefx: /` makes "one of prefix, path, ... is required"), so the typo is named, with
///   the closest known field.
/// - **Every error, not only the first.** `decode(_:recovering:_:)` decodes the document again after an error,
///   leaving out the list element it was in (a listener, cluster, virtual host or route: elements that do not
///   depend on each other), until a pass gets through. The errors of all passes are reported together, by line.
package final class ConfigSession {
    /// List elements (`static_resources.clusters[2]`) that earlier passes found errors in; `ConfigValue.array()`
    /// leaves them out.
    package let excluded: Set<String>
    /// The lists whose elements can be left out to get past an error in one of them.
    package let recoverableLists: Set<String>
    /// The HTTP filters a config may name (given by the layer that implements them).
    package let httpFilters: HTTPFilterCatalog

    private struct Entry {
        weak var object: ConfigObject?
    }
    /// Mappings decoded in this pass, by weak reference: those still alive and not finished are the ones being
    /// decoded when an error is raised.
    private var entries: [Entry] = []
    private var registeredSinceCompaction = 0

    /// For tests: when set, `ConfigObject.finish()` records here each mapping whose fields fit no message in
    /// `ConfigFields`, which means a decoder reads a field that the lists lack.
    /// Fields Envoy defines that Pilotfish does not implement yet, met in this pass: recorded rather than thrown
    /// (`ConfigObject.unsupported`), and reported with the pass's other errors.
    package var unsupportedFields: [ConfigError] = []
    /// Only a pass of `decode(_:recovering:_:)` collects `unsupportedFields` (and reports them when it ends); a
    /// session used on its own keeps throwing at the first one, so that nothing can be accepted silently.
    package private(set) var defersUnsupported = false

    package var recordsFieldGaps = false
    package var fieldGaps: [String] = []

    package init(excluded: Set<String> = [], recoverableLists: Set<String> = [], httpFilters: HTTPFilterCatalog) {
        self.httpFilters = httpFilters
        self.excluded = excluded
        self.recoverableLists = recoverableLists
    }

    package func register(_ object: ConfigObject) {
        entries.append(Entry(object: object))
        registeredSinceCompaction += 1
        if registeredSinceCompaction >= 256 {
            entries.removeAll { $0.object?.isFinished ?? true }
            registeredSinceCompaction = 0
        }
    }

    package func isExcluded(_ path: String) -> Bool {
        !excluded.isEmpty && excluded.contains(path)
    }

    /// `error`, or instead the unknown fields of the mappings still being decoded around it.
    package func resolve(_ error: ConfigError) -> ConfigError {
        let unknown = unknownFields(around: error.path, besides: nil)
        return unknown.isEmpty ? error : ConfigError(collecting: unknown)
    }

    /// The unknown fields of the unfinished mappings that hold `path` (itself included), other than `besides`,
    /// up to the list element that a new pass would leave out (whose mappings are not decoded again), or up to
    /// the root when there is none.
    package func unknownFields(around path: String, besides: ConfigObject?) -> [ConfigError] {
        let boundary = recoveryPoint(for: path)
        var seen = Set<ObjectIdentifier>()
        var errors: [ConfigError] = []
        for entry in entries.reversed() {
            guard let object = entry.object, object !== besides, !object.isFinished,
                  Self.path(object.path, holds: path),
                  boundary.map({ Self.path($0, holds: object.path) }) ?? true,
                  seen.insert(ObjectIdentifier(object)).inserted
            else { continue }
            errors += object.unknownFieldErrors()
        }
        return errors
    }

    /// The innermost element of a recoverable list that holds `path`: `a.routes[3]` for `a.routes[3].match.x`.
    package func recoveryPoint(for path: String) -> String? {
        var best: String.Index?
        for list in recoverableLists {
            var searchStart = path.startIndex
            while let r = path.range(of: list + "[", range: searchStart..<path.endIndex) {
                searchStart = r.upperBound
                let atBoundary = r.lowerBound == path.startIndex || path[path.index(before: r.lowerBound)] == "."
                guard atBoundary, let close = path[r.upperBound...].firstIndex(of: "]"),
                      close > r.upperBound, path[r.upperBound..<close].allSatisfy(\.isNumber)
                else { continue }
                let end = path.index(after: close)
                if best.map({ end > $0 }) ?? true { best = end }
            }
        }
        return best.map { String(path[..<$0]) }
    }

    /// Whether the value at `inner` is `outer` or inside it.
    package static func path(_ outer: String, holds inner: String) -> Bool {
        if outer.isEmpty || outer == inner { return true }
        guard inner.hasPrefix(outer) else { return false }
        let next = inner[inner.index(inner.startIndex, offsetBy: outer.count)]
        return next == "." || next == "["
    }

    /// Most errors one decode reports; a document with more (a generated config with the same typo in every
    /// route) is cut short rather than decoded once per error.
    package static let errorLimit = 100

    /// Decodes `root` with `body`, and when that fails, decodes it again without the element of
    /// `recoverableLists` the error was in, and so on, so that one run reports every problem. Throws all the
    /// errors found as one `ConfigError`, sorted by line.
    package static func decode<T>(
        _ root: Node, recovering recoverableLists: Set<String>, httpFilters: HTTPFilterCatalog,
        _ body: (ConfigValue) throws -> T
    ) throws -> T {
        var excluded = Set<String>()
        var found: [ConfigError] = []
        var unsupported: [ConfigError] = []
        var seen = Set<String>()
        func note(_ fields: [ConfigError]) {
            for e in fields where seen.insert(e.path).inserted { unsupported.append(e) }
        }
        while true {
            let session = ConfigSession(excluded: excluded, recoverableLists: recoverableLists, httpFilters: httpFilters)
            session.defersUnsupported = true
            do {
                let result = try body(ConfigValue(node: root, path: "", session: session))
                note(session.unsupportedFields)
                if found.isEmpty && unsupported.isEmpty { return result }
                break
            } catch let error as ConfigError {
                note(session.unsupportedFields)
                // An error inside a mapping that has an unsupported field may only follow from leaving that field
                // out (a required one-of it belongs to): the unsupported field is what to report there.
                found += error.all.filter { e in
                    !session.unsupportedFields.contains { Self.path(Self.parent(of: $0.path), holds: e.path) }
                }
                if found.count + unsupported.count >= errorLimit {
                    found.append(ConfigError(
                        path: "", line: nil,
                        message: "stopped after \(found.count) errors; fix these and check again for more"))
                    break
                }
                guard let point = session.recoveryPoint(for: error.path), !excluded.contains(point) else { break }
                excluded.insert(point)
            }
        }
        throw ConfigError(collecting: found + unsupported)
    }

    /// The mapping that holds the field at `path` (`a.b[2].c` → `a.b[2]`).
    static func parent(of path: String) -> String {
        guard let dot = path.lastIndex(of: ".") else { return "" }
        return String(path[..<dot])
    }
}
