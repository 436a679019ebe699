/// Why an identity could not be parsed, issued, loaded or written.
///
/// Every message names the offending input (the SPIFFE ID, the flag's value, the file), so an operator rotating
/// identities from a script sees at once which argument or file to fix.
public struct IdentityError: Error, CustomStringConvertible, Equatable, Sendable {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
