/// A configuration problem, located by its field path and, for YAML and JSON files, its line.
///
/// Every rejection names where it is, so a user never has to guess which of a hundred lines is wrong.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var line: Int?
    public var message: String

    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String {
        let location = path.isEmpty ? "<root>" : path
        if let line { return "\(location) (line \(line)): \(message)" }
        return "\(location): \(message)"
    }
}
