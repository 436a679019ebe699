/// Why a substitution format string was refused; `SubstitutionFormat(parsing:at:)` turns it into a `ConfigError`
/// at the value's path and line.
public struct FormatSyntaxError: Error, Sendable, Equatable {
    public var message: String
    package init(_ message: String) { self.message = message }
}
