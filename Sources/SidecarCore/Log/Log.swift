import Foundation
import NIOCore
import NIOConcurrencyHelpers

/// Structured one-line logs on stderr (`time level msg key=value`). Quiet by default: `info` prints
/// start-up and shutdown only.
public enum Log {
    public enum Level: Int, Sendable, CaseIterable, Comparable {
        case trace, debug, info, warning, error, critical, off

        public init?(name: String) {
            switch name.lowercased() {
            case "trace": self = .trace
            case "debug": self = .debug
            case "info": self = .info
            case "warn", "warning": self = .warning
            case "error": self = .error
            case "critical": self = .critical
            case "off": self = .off
            default: return nil
            }
        }

        package var name: String { ["trace", "debug", "info", "warning", "error", "critical", "off"][rawValue] }
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    private static let current = NIOLockedValueBox(Level.info)

    public static var level: Level {
        get { current.withLockedValue { $0 } }
        set { current.withLockedValue { $0 = newValue } }
    }

    public static func log(_ level: Level, _ message: String, _ fields: [(String, String)] = []) {
        guard level >= Self.level, level != .off else { return }
        var line = "\(ISO8601DateFormatter().string(from: Date())) \(level.name) \(message)"
        for (k, v) in fields {
            let quoted = v.contains(" ") || v.isEmpty ? "\"\(v.replacingOccurrences(of: "\"", with: "\\\""))\"" : v
            line += " \(k)=\(quoted)"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    public static func info(_ m: String, _ f: [(String, String)] = []) { log(.info, m, f) }
    public static func warning(_ m: String, _ f: [(String, String)] = []) { log(.warning, m, f) }
    public static func error(_ m: String, _ f: [(String, String)] = []) { log(.error, m, f) }
    public static func debug(_ m: String, _ f: [(String, String)] = []) { log(.debug, m, f) }
}

extension Log {
    /// An address as logs show it: `ip:port`, `[ip]:port` for IPv6, `?` when unknown.
    package static func describe(_ a: SocketAddress?) -> String {
        guard let a, let ip = a.ipAddress, let port = a.port else { return "?" }
        if case .v6 = a { return "[\(ip)]:\(port)" }
        return "\(ip):\(port)"
    }
}
