import Foundation

/// The calling process's effective capabilities, read from /proc/self/status (`CapEff`), so a missing
/// capability is reported up front instead of as an EPERM halfway through.
public struct Capabilities: Equatable, Sendable {
    public static let netAdmin = 12
    public static let netRaw = 13

    public let effective: UInt64

    public init(effective: UInt64) { self.effective = effective }

    public static func current() -> Capabilities? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return parse(status: status)
    }

    public static func parse(status: String) -> Capabilities? {
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces)
            return UInt64(hex, radix: 16).map(Capabilities.init(effective:))
        }
        return nil
    }

    public func has(_ capability: Int) -> Bool { effective & (1 << UInt64(capability)) != 0 }

    /// Fails with what to do when CAP_NET_ADMIN is missing.
    public static func requireNetAdmin(for action: String) throws(CaptureError) {
        guard let caps = current() else { return }
        if !caps.has(netAdmin) {
            throw CaptureError(
                "\(action) needs CAP_NET_ADMIN, which this process does not have (uid \(getuid())); run sidecar-init as root or add NET_ADMIN (and NET_RAW) to the init container's securityContext.capabilities.add")
        }
    }
}
