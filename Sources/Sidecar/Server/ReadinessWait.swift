import Foundation
import SidecarCore

/// `sidecar wait-ready`: polls the sidecar's readiness endpoint until it answers 200. A classic (not native)
/// injected sidecar runs it as its postStart hook, so the kubelet starts the app's containers only once the proxy
/// is ready. Plain blocking sockets: it runs before anything else in its process.
public enum ReadinessWait {
    /// True once `GET path` on 127.0.0.1:`port` answered 200 within `timeout` seconds.
    public static func waitUntilReady(port: Int, path: String = "/healthz/ready", timeout: Double,
                                      interval: Double = 0.2) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if status(port: port, path: path) == 200 { return true }
            Thread.sleep(forTimeInterval: interval)
        } while Date() < deadline
        return false
    }

    /// Asks the local sidecar to drain and exit (`POST /quitquitquit` on its admin port): what `sidecar run-app`
    /// does once a Job's app exited, so the pod can complete. True when the sidecar said OK.
    public static func quit(adminPort: Int) -> Bool {
        status(port: adminPort, path: "/quitquitquit", method: "POST") == 200
    }

    /// The status of one request (HTTP/1.1 with `connection: close`: the proxy refuses HTTP/1.0, as Envoy does), or
    /// nil.
    static func status(port: Int, path: String, method: String = "GET") -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array(("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pilotfish\r\n"
            + (method == "POST" ? "Content-Length: 0\r\n" : "") + "Connection: close\r\n\r\n").utf8)
        guard send(fd, request, request.count, 0) == request.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 64)
        var got = 0
        while got < 12 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 64 - got, 0) }
            if n <= 0 { break }
            got += n
        }
        // "HTTP/1.x NNN"
        guard got >= 12 else { return nil }
        return Int(String(decoding: buffer[9..<12], as: UTF8.self))
    }
}
