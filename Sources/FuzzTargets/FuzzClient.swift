#if canImport(Glibc)
import Glibc
#endif

/// One downstream connection per input, with blocking sockets: connect to the proxy on loopback, write the bytes,
/// and read what comes back until the proxy closes, or nothing has come for `quiet` milliseconds, or `limit`
/// milliseconds have passed. The client does not half-close: like Envoy, the proxy takes a downstream FIN on an
/// HTTP connection for the end of the connection and would drop the request it is still forwarding. The
/// connection is closed with a reset (SO_LINGER 0), so thousands of inputs a second leave no TIME_WAIT sockets.
enum FuzzClient {
    /// Returns what the proxy answered.
    static func exchange(port: Int, prefix: [UInt8], input: UnsafeRawBufferPointer, quiet: Int32 = 10,
                         limit: Int = 1000) -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { fatalError("socket: errno \(errno)") }
        defer { close(fd) }
        // A proxy that stops reading (it answered early and closes, or applies backpressure) ends the input there.
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        // libFuzzer's timeout timer (SIGALRM) interrupts system calls: an interrupted connect goes on in the
        // background, and is done when the socket is writable.
        if connected != 0 {
            guard errno == EINTR || errno == EINPROGRESS else { fatalError("connect to the in-process proxy: errno \(errno)") }
            var writable = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            while poll(&writable, 1, 5000) < 0 && errno == EINTR {}
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else { fatalError("connect to the in-process proxy: errno \(error)") }
        }

        // The proxy may answer and close before it has read everything; a failed write ends the writing there.
        if prefix.withUnsafeBytes({ writeAll(fd, $0) }) { _ = writeAll(fd, input) }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let deadline = Self.milliseconds() + limit
        while Self.milliseconds() < deadline {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let polled = poll(&ready, 1, quiet)
            if polled == 0 { break }
            if polled < 0 { if errno == EINTR { continue } else { break } }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            answer += buffer[..<n]
        }
        return answer
    }

    private static func milliseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}
