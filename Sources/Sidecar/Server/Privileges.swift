import CLibcap
import Foundation
import NIOCore
import SidecarCore

/// Least privilege: the sidecar checks up front that it holds the capabilities its config needs
/// (CAP_NET_ADMIN for transparent listeners, CAP_NET_BIND_SERVICE for ports below the unprivileged
/// start), and once its listeners are bound it drops everything, on every thread.
public enum Privileges {
    public static let netAdmin: Int32 = 12  // CAP_NET_ADMIN
    public static let netBindService: Int32 = 10  // CAP_NET_BIND_SERVICE

    public struct Need: Equatable, Sendable {
        public var capability: Int32
        public var name: String
        public var why: String
    }

    /// What the config needs at start.
    public static func needs(_ bootstrap: Bootstrap) -> [Need] {
        var out: [Need] = []
        for l in bootstrap.listeners where l.transparent {
            out.append(Need(capability: netAdmin, name: "CAP_NET_ADMIN", why: "listener '\(l.name)' is transparent (IP_TRANSPARENT)"))
        }
        for l in bootstrap.listeners where l.originalSourceMark != nil {
            out.append(Need(capability: netAdmin, name: "CAP_NET_ADMIN", why: "listener '\(l.name)' uses original_src (transparent upstream sockets, SO_MARK)"))
        }
        let unprivilegedStart =
            (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1024
        let ports = bootstrap.listeners.map { ($0.name, $0.address.port) } + (bootstrap.admin.map { [("admin", $0.address.port)] } ?? [])
        for (name, port) in ports where port > 0 && port < unprivilegedStart {
            out.append(Need(capability: netBindService, name: "CAP_NET_BIND_SERVICE", why: "'\(name)' binds port \(port)"))
        }
        return out
    }

    /// Throws a message naming the capability, the listener that needs it and what to do.
    public static func check(_ bootstrap: Bootstrap) throws {
        for need in needs(bootstrap) where pf_cap_effective(need.capability) != 1 {
            throw ServerError(
                "\(need.why), which needs \(need.name), and this process (uid \(getuid())) does not have it; add \(need.name.dropFirst(4)) to the container's securityContext.capabilities.add (or use --capture-mode redirect, which needs no transparent listener)")
        }
    }

    /// What the proxy still needs while running: CAP_NET_ADMIN when it opens original_src upstream sockets.
    public static func keptAfterStart(_ bootstrap: Bootstrap) -> [Int32] {
        bootstrap.listeners.contains { $0.originalSourceMark != nil } ? [netAdmin] : []
    }

    /// Keeps only `keep` on the calling thread.
    @discardableResult
    static func keepOnThisThread(_ keep: [Int32]) -> Bool {
        keep.withUnsafeBufferPointer { pf_cap_keep_only($0.baseAddress, Int32($0.count)) == 0 }
    }
}

extension SidecarServer {
    /// After start: every thread of the proxy keeps only what it still needs (nothing, or CAP_NET_ADMIN
    /// for original_src). Capabilities are per thread, so each event loop and the DNS thread pool drop
    /// their own (and the tracers' exporter thread), then the caller's thread. Returns what was kept.
    @discardableResult
    public func dropCapabilities() throws -> [Int32] {
        let keep = Privileges.keptAfterStart(bootstrap)
        var ok = true
        for w in workers {
            ok = try w.loop.submit { Privileges.keepOnThisThread(keep) }.wait() && ok
        }
        ok = try threadPool.runIfActive(eventLoop: group.next()) { Privileges.keepOnThisThread(keep) }.wait() && ok
        // The tracers' exporter thread (and the threads it later starts, which inherit from it).
        if !spanExporters.isEmpty {
            for loop in tracingGroup.makeIterator() {
                ok = try loop.submit { Privileges.keepOnThisThread(keep) }.wait() && ok
            }
        }
        ok = Privileges.keepOnThisThread(keep) && ok
        if !ok { throw ServerError("could not drop capabilities after start") }
        return keep
    }
}
