#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A response as it came off the wire.
struct RawResponse: Sendable {
    var version: String
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    var bodyString: String { String(decoding: body, as: UTF8.self) }

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }
}

enum RawClientError: Error, CustomStringConvertible {
    case connectFailed(errno: Int32)
    case sendFailed(errno: Int32)
    case receiveFailed(errno: Int32)
    /// Nothing arrived within the socket's receive timeout.
    case timeout
    /// The peer closed (or reset) the connection before a complete message arrived.
    case closed(partial: [UInt8])
    case malformed(String)

    var description: String {
        switch self {
        case .connectFailed(let e): "connect failed: \(String(cString: strerror(e)))"
        case .sendFailed(let e): "send failed: \(String(cString: strerror(e)))"
        case .receiveFailed(let e): "recv failed: \(String(cString: strerror(e)))"
        case .timeout: "timed out waiting for data"
        case .closed(let partial): "connection closed after \(partial.count) bytes"
        case .malformed(let why): "malformed response: \(why)"
        }
    }

    /// No connection came about: refused, reset while it waited in a listener's backlog that then
    /// closed, or not accepted within the timeout (EINPROGRESS).
    var isConnectFailure: Bool {
        if case .connectFailed = self { return true }
        return false
    }
}

/// A blocking TCP client on POSIX sockets that sends exactly the bytes it is given and parses what comes
/// back. Every receive and send is bounded by the socket timeouts, so a test can never hang on it.
///
/// Sending from one thread while receiving on another is fine (the upload test does it); two threads
/// must not receive at once.
final class RawClient: @unchecked Sendable {
    private var fd: Int32
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    /// The peer's FIN (or RST) was read.
    private(set) var sawEOF = false

    /// Connects to `host:port`; `timeout` bounds the connect and every later send and receive.
    init(port: Int, host: String = "127.0.0.1", timeout: Double = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RawClientError.connectFailed(errno: errno) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            fd = -1
            throw RawClientError.connectFailed(errno: e)
        }
    }

    deinit { close() }

    /// Closes the socket (idempotent).
    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Closes with an RST instead of a FIN (SO_LINGER 0).
    func abort() {
        guard fd >= 0 else { return }
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    // MARK: Sending

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw RawClientError.sendFailed(errno: errno)
            }
            offset += n
        }
    }

    // MARK: Receiving

    private var available: Int { buffer.count - bufferStart }

    private func compact() {
        if bufferStart > 0 && bufferStart >= buffer.count / 2 {
            buffer.removeFirst(bufferStart)
            bufferStart = 0
        }
    }

    /// Reads more bytes into the buffer; false on EOF. Throws `.timeout` when nothing arrives in time.
    @discardableResult
    private func fill() throws -> Bool {
        if sawEOF { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                compact()
                buffer.append(contentsOf: chunk[0..<n])
                return true
            }
            if n == 0 {
                sawEOF = true
                return false
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: throw RawClientError.timeout
            case ECONNRESET, EPIPE:
                sawEOF = true
                return false
            default: throw RawClientError.receiveFailed(errno: errno)
            }
        }
    }

    private func take(_ n: Int) -> [UInt8] {
        let out = Array(buffer[bufferStart..<bufferStart + n])
        bufferStart += n
        return out
    }

    private func takeAll() -> [UInt8] { take(available) }

    func readExactly(_ n: Int) throws -> [UInt8] {
        while available < n {
            guard try fill() else { throw RawClientError.closed(partial: takeAll()) }
        }
        return take(n)
    }

    /// Reads through the next CRLF; returns the line without it.
    private func readLine(limit: Int = 1 << 20) throws -> String {
        var scanned = 0  // bytes after bufferStart already searched (stable across compaction)
        while true {
            var i = bufferStart + max(scanned, 1)
            while i < buffer.count {
                if buffer[i] == 10 && buffer[i - 1] == 13 {
                    let line = take(i - 1 - bufferStart)
                    bufferStart += 2
                    return String(decoding: line, as: UTF8.self)
                }
                i += 1
            }
            scanned = available
            if available > limit { throw RawClientError.malformed("line longer than \(limit) bytes") }
            guard try fill() else { throw RawClientError.closed(partial: takeAll()) }
        }
    }

    /// Reads one response. `head: true` for a response to HEAD (no body whatever the headers say).
    /// A 1xx response is returned on its own; call again for the final one.
    func readResponse(head: Bool = false) throws -> RawResponse {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw RawClientError.malformed("status line '\(statusLine)'")
        }
        var headers: [(name: String, value: String)] = []
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { throw RawClientError.malformed("header line '\(line)'") }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((name, value))
        }
        var response = RawResponse(version: String(parts[0]), status: status,
                                   reason: parts.count > 2 ? String(parts[2]) : "", headers: headers, body: [])
        if head || status < 200 || status == 204 || status == 304 { return response }
        if let te = response.header("transfer-encoding"), te.lowercased().contains("chunked") {
            response.body = try readChunkedBody()
        } else if let cl = response.header("content-length") {
            guard let n = Int(cl) else { throw RawClientError.malformed("content-length '\(cl)'") }
            response.body = try readExactly(n)
        } else {
            response.body = try readUntilEOF()
        }
        return response
    }

    private func readChunkedBody() throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = try readLine()
            let hex = sizeLine.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard let size = Int(hex, radix: 16) else { throw RawClientError.malformed("chunk size '\(sizeLine)'") }
            if size == 0 {
                // Trailers, then the empty line.
                while try !readLine().isEmpty {}
                return body
            }
            body += try readExactly(size)
            guard try readLine().isEmpty else { throw RawClientError.malformed("chunk without CRLF") }
        }
    }

    /// Everything until the peer closes. Throws `.timeout` if it does not close in time.
    func readUntilEOF() throws -> [UInt8] {
        while try fill() {}
        return takeAll()
    }

    /// Reads and drops data until the peer closes: true if it closed (FIN or RST), false if it was still
    /// open when the receive timeout ran out.
    func waitForClose() -> Bool {
        do {
            _ = try readUntilEOF()
            return true
        } catch {
            return false
        }
    }

    /// Sets the receive timeout for later reads.
    func setReceiveTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}

extension RawClient {
    /// A request with `host` and the given extra header lines, no body.
    static func request(_ method: String = "GET", _ target: String, host: String = "example.com",
                        version: String = "HTTP/1.1", headers: [String] = []) -> String {
        var s = "\(method) \(target) \(version)\r\n"
        if !host.isEmpty { s += "host: \(host)\r\n" }
        for h in headers { s += h + "\r\n" }
        return s + "\r\n"
    }

    /// One request on a fresh connection, closed afterwards.
    static func fetch(port: Int, _ method: String = "GET", _ target: String, host: String = "example.com",
                      headers: [String] = []) throws -> RawResponse {
        let c = try RawClient(port: port)
        defer { c.close() }
        try c.send(request(method, target, host: host, headers: headers + ["connection: close"]))
        return try c.readResponse(head: method == "HEAD")
    }
}

/// A port on 127.0.0.1 that nothing listens on: bound, then closed again.
func closedLocalPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw RawClientError.connectFailed(errno: errno) }
    defer { Glibc.close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
        }
    }
    guard ok else { throw RawClientError.connectFailed(errno: errno) }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Polls `condition` every 10 ms until it holds or `timeout` seconds pass; returns its last value.
func eventually(timeout: Double = 2, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        usleep(10_000)
    }
}
