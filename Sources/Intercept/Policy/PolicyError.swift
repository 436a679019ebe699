/// A problem with the capture settings, worded for the person who wrote them: what is wrong and what to do.
public struct PolicyError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
