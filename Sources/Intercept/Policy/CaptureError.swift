import Glibc

/// A failure while applying, verifying or removing capture rules, worded to say what to do about it.
public struct CaptureError: Error, CustomStringConvertible {
    public let message: String
    /// The system error behind it, when there is one.
    public let code: Int32?
    public init(_ message: String, code: Int32? = nil) {
        self.message = message
        self.code = code
    }
    public var description: String { message }

    static func system(_ what: String, errno code: Int32) -> CaptureError {
        CaptureError("\(what) failed: \(String(cString: strerror(code)))\(hint(code))", code: code)
    }

    static func hint(_ code: Int32) -> String {
        switch code {
        case EPERM, EACCES:
            return "; sidecar-init needs CAP_NET_ADMIN in the pod's network namespace (run as root, or add NET_ADMIN to the init container's securityContext.capabilities)"
        case ENETDOWN:
            return " (the loopback interface is down; bring it up first: ip link set lo up)"
        default: return ""
        }
    }
}
