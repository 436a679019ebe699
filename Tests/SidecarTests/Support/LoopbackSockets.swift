import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Plain sockets for tests that must see the kernel's side of a connection: a listener whose accepted sockets the
/// test reads (or does not read) itself, writes that stop when the peer stops taking bytes, and the bytes each
/// loopback socket holds in its kernel queues.
enum LoopbackSockets {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ what: String) { description = "\(what): errno \(errno) (\(String(cString: strerror(errno))))" }
    }

    /// A listening socket on 127.0.0.1 and its port.
    static func listen() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && Glibc.listen(fd, 16) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw Failure("bind/listen") }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// The next connection on `listener` within `timeout` seconds.
    static func accept(_ listener: Int32, timeout: Double = 5) throws -> Int32 {
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { throw Failure("accept timed out") }
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw Failure("accept") }
        return fd
    }

    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw Failure("connect") }
        return fd
    }

    /// The local (`peer: false`) or remote port of a connected socket.
    static func port(_ fd: Int32, peer: Bool = false) -> Int {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(fd, $0, &len) : getsockname(fd, $0, &len)
            }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func sendAll(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure("send") }
            off += n
        }
    }

    /// Reads until `terminator` has been seen (a request or response head); returns what was read.
    static func readThrough(_ fd: Int32, _ terminator: String = "\r\n\r\n", timeout: Double = 5) throws -> String {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(timeout)
        while !String(decoding: data, as: UTF8.self).contains(terminator) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard Date() < deadline, poll(&p, 1, 100) >= 0 else { throw Failure("read timed out") }
            guard p.revents != 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 1, 0) }
            guard n > 0 else { throw Failure("read: peer closed") }
            data.append(chunk[0])
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Writes up to `total` zero bytes without blocking, until they are all written or the peer has taken nothing
    /// for `stall` seconds; returns how many were written.
    static func writeUntilStalled(_ fd: Int32, total: Int, stall: Double = 1) -> Int {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        let chunk = [UInt8](repeating: 0x61, count: 65_536)
        var written = 0
        while written < total {
            let n = chunk.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress!, min(chunk.count, total - written), Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                written += n
                continue
            }
            guard n < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { break }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, Int32(stall * 1000)) == 0 { break }
        }
        return written
    }

    /// Bytes the kernel holds for one TCP socket: `tx` written by its owner and not yet acknowledged by the peer's
    /// kernel (sent or not), `rx` received and not yet read by its owner (`/proc/net/tcp`'s tx_queue:rx_queue).
    struct Queues: Equatable {
        var tx = 0, rx = 0
    }

    /// The queues of every IPv4 loopback socket, by (local port, remote port).
    static func queues() throws -> [Pair: Queues] {
        // Read to the end: procfs reports a size of 0, and the table runs to hundreds of KiB on a busy machine.
        guard let handle = FileHandle(forReadingAtPath: "/proc/net/tcp") else { throw Failure("open /proc/net/tcp") }
        defer { try? handle.close() }
        let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        var out: [Pair: Queues] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ")
            guard f.count > 4 else { continue }
            let local = f[1].split(separator: ":"), remote = f[2].split(separator: ":"), q = f[4].split(separator: ":")
            guard local.count == 2, remote.count == 2, q.count == 2, local[0] == "0100007F",
                  let lp = Int(local[1], radix: 16), let rp = Int(remote[1], radix: 16),
                  let tx = Int(q[0], radix: 16), let rx = Int(q[1], radix: 16) else { continue }
            out[Pair(local: lp, remote: rp)] = Queues(tx: tx, rx: rx)
        }
        return out
    }

    struct Pair: Hashable { let local, remote: Int }

    /// The queues of the sockets `pairs`, once two reads 200 ms apart agree (nobody is moving bytes any more).
    static func settledQueues(_ pairs: [Pair], timeout: Double = 5) throws -> [Queues] {
        var last: [Queues]?
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let all = try queues()
            let now = try pairs.map { p in
                guard let q = all[p] else { throw Failure("no socket \(p.local)→\(p.remote) in /proc/net/tcp") }
                return q
            }
            if now == last { return now }
            last = now
            usleep(200_000)
        }
        throw Failure("socket queues never settled")
    }
}
