import CNetfilter
import Glibc

/// `sidecar-init validate`: proves the installed rules really capture, as Istio's validation mode does.
/// It listens on a capture port, opens a connection that the rules must redirect there, and checks that
/// the accepted connection still knows where it was going.
public struct CaptureSelfCheck: Sendable {
    public struct Probe: Sendable {
        /// The capture port the connection must land on.
        public var capturePort: UInt16
        /// Where the client connects; nothing listens there, so only capture can complete the connection.
        public var target: (address: String, port: UInt16)
        /// Credentials the client socket is created with (`nil`: ours).
        public var uid: UInt32?
        public var gid: UInt32?
        public var what: String

        public init(capturePort: UInt16, target: (address: String, port: UInt16), uid: UInt32?, gid: UInt32?, what: String) {
            self.capturePort = capturePort
            self.target = target
            self.uid = uid
            self.gid = gid
            self.what = what
        }
    }

    public var timeoutMilliseconds: Int32

    public init(timeoutMilliseconds: Int32 = 3000) {
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    public func run(_ probe: Probe) throws(CaptureError) -> OriginalDestination {
        let v6 = probe.target.address.contains(":")
        let family = v6 ? AF_INET6 : AF_INET
        let listener = try Self.listen(port: probe.capturePort, family: family)
        defer { close(listener) }

        let client = try Self.socket(family: family, uid: probe.uid, gid: probe.gid)
        defer { close(client) }
        try Self.startConnect(client, to: probe.target, family: family)

        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: client, events: Int16(POLLOUT), revents: 0)]
        let deadline = Self.nowMilliseconds() + Int64(timeoutMilliseconds)
        while true {
            let left = deadline - Self.nowMilliseconds()
            if left <= 0 { break }
            fds[0].revents = 0
            fds[1].revents = 0
            _ = poll(&fds, nfds_t(fds.count), Int32(left))
            if fds[0].revents & Int16(POLLIN) != 0 {
                let conn = accept(listener, nil, nil)
                if conn >= 0 {
                    defer { close(conn) }
                    guard let original = OriginalDestination.of(socket: conn) else {
                        throw CaptureError("validation failed: \(probe.what): the connection arrived on :\(probe.capturePort) but its original destination is unknown")
                    }
                    let wanted = Self.normalise(probe.target.address)
                    guard Self.normalise(original.address) == wanted, original.port == probe.target.port else {
                        throw CaptureError(
                            "validation failed: \(probe.what): the connection arrived on :\(probe.capturePort) with original destination \(original), expected \(probe.target.address):\(probe.target.port)")
                    }
                    return original
                }
            }
            if fds[1].revents & Int16(POLLERR | POLLHUP) != 0 {
                var err: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(client, SOL_SOCKET, SO_ERROR, &err, &len)
                throw CaptureError(
                    "validation failed: \(probe.what): connecting to \(probe.target.address):\(probe.target.port) failed (\(String(cString: strerror(err)))) instead of being captured to :\(probe.capturePort); the capture rules are not in effect in this network namespace (run `sidecar-init apply` first)")
            }
            if fds[1].revents & Int16(POLLOUT) != 0 {
                // Connected; keep polling for the accept (it is already queued if capture worked).
                fds[1].events = 0
            }
        }
        throw CaptureError(
            "validation failed: \(probe.what): no connection reached :\(probe.capturePort) within \(timeoutMilliseconds) ms; the capture rules are not in effect in this network namespace (run `sidecar-init apply` first)")
    }

    static func normalise(_ address: String) -> String {
        address.hasPrefix("::ffff:") ? String(address.dropFirst(7)) : address
    }

    static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func listen(port: UInt16, family: Int32) throws(CaptureError) -> Int32 {
        let fd = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CaptureError.system("creating the validation listener", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc: Int32
        if family == AF_INET6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            if e == EADDRINUSE {
                throw CaptureError("validation needs port \(port) and it is in use; run `sidecar-init validate` before the sidecar starts")
            }
            throw CaptureError.system("binding the validation listener to port \(port)", errno: e)
        }
        guard Glibc.listen(fd, 8) == 0 else {
            let e = errno
            close(fd)
            throw CaptureError.system("listening on port \(port)", errno: e)
        }
        return fd
    }

    /// A socket owned by `uid`/`gid`: the kernel stamps a socket with the creating thread's fsuid/fsgid,
    /// which is what nftables' `meta skuid` and iptables' `-m owner` compare. Only this thread changes.
    static func socket(family: Int32, uid: UInt32?, gid: UInt32?) throws(CaptureError) -> Int32 {
        var previousUID: Int32?
        var previousGID: Int32?
        if let gid { previousGID = pf_setfsgid(gid) }
        if let uid { previousUID = pf_setfsuid(uid) }
        let fd = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        let e = errno
        if let previousUID { _ = pf_setfsuid(UInt32(bitPattern: previousUID)) }
        if let previousGID { _ = pf_setfsgid(UInt32(bitPattern: previousGID)) }
        guard fd >= 0 else { throw CaptureError.system("creating the validation client socket", errno: e) }
        return fd
    }

    static func startConnect(_ fd: Int32, to target: (address: String, port: UInt16), family: Int32) throws(CaptureError) {
        let rc: Int32
        if family == AF_INET6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = target.port.bigEndian
            guard inet_pton(AF_INET6, target.address, &sa.sin6_addr) == 1 else {
                throw CaptureError("validation probe address '\(target.address)' is not an IPv6 address")
            }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = target.port.bigEndian
            guard inet_pton(AF_INET, target.address, &sa.sin_addr) == 1 else {
                throw CaptureError("validation probe address '\(target.address)' is not an IPv4 address")
            }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        if rc != 0 && errno != EINPROGRESS {
            throw CaptureError.system("connecting to \(target.address):\(target.port)", errno: errno)
        }
    }
}
