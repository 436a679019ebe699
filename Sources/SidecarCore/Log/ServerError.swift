/// A start-up or install failure, reported to the operator as its message.
package struct ServerError: Error, CustomStringConvertible {
    package let description: String
    package init(_ d: String) { description = d }
}
