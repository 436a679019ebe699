import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Sidecar
@testable import SidecarCore

/// `per_connection_buffer_limit_bytes` (listener and cluster) bounds what the proxy holds for a connection whose
/// peer stops reading: the proxy stops reading the other side (backpressure) instead of buffering the body.
///
/// How the bytes held in the proxy are measured, without timing: one side writes a 64 MiB body until the other
/// side has taken nothing for a second. Every byte written is then in exactly one place: the writer's kernel send
/// queue, the proxy's kernel receive queue on that side, the proxy's memory, the proxy's kernel send queue on the
/// other side, or the stalled reader's kernel receive queue. The four kernel queues are read from `/proc/net/tcp`
/// (`tx_queue:rx_queue`, once they stop changing), so what the proxy holds is what was written minus them, exact
/// to the few hundred bytes by which the proxy's request or response head differs from the one it received.
struct BufferLimitTests {
    static let body = 64 << 20

    static func yaml(listenerLimit: Int, clusterLimit: Int, backendPort: Int) -> String {
        let yaml = ProxyConfig.single(port: backendPort)
            .replacingOccurrences(of: "  - name: listener_0\n",
                                  with: "  - name: listener_0\n    per_connection_buffer_limit_bytes: \(listenerLimit)\n")
            .replacingOccurrences(of: "{name: backend, ", with: "{name: backend, per_connection_buffer_limit_bytes: \(clusterLimit), ")
        precondition(yaml.contains("per_connection_buffer_limit_bytes: \(clusterLimit)"), "ProxyConfig.yaml changed its layout")
        return yaml
    }

    /// The largest overshoot allowed past the limit: NIO stops asking for reads once the outgoing channel is over
    /// its high watermark, but the read already under way may still bring in its messages (4 reads of at most
    /// 64 KiB on an accepted or client channel) and the HTTP codecs hold up to one read of their own.
    static let slack = 512 << 10

    @Test(arguments: [65_536, 1_048_576])
    func uploadToABackendThatStopsReadingIsHeldBackAtTheClient(limit: Int) throws {
        let backend = try LoopbackSockets.listen()
        defer { close(backend.fd) }
        let proxy = try ProxyHarness(yaml: Self.yaml(listenerLimit: limit, clusterLimit: limit, backendPort: backend.port))
        defer { proxy.shutdown() }
        let client = try LoopbackSockets.connect(port: proxy.port)
        defer { close(client) }
        let head = "POST /upload HTTP/1.1\r\nHost: x\r\ncontent-length: \(Self.body)\r\n\r\n"
        try LoopbackSockets.sendAll(client, head)
        let upstream = try LoopbackSockets.accept(backend.fd)
        defer { close(upstream) }
        // The backend reads nothing at all.
        let written = LoopbackSockets.writeUntilStalled(client, total: Self.body)
        #expect(written < Self.body, "the whole body went through: the proxy never stopped reading")

        let clientPort = LoopbackSockets.port(client), proxyUpPort = LoopbackSockets.port(upstream, peer: true)
        let q = try LoopbackSockets.settledQueues([
            .init(local: clientPort, remote: proxy.port), .init(local: proxy.port, remote: clientPort),
            .init(local: proxyUpPort, remote: backend.port), .init(local: backend.port, remote: proxyUpPort),
        ])
        let readByProxy = head.utf8.count + written - q[0].tx - q[1].rx
        let forwarded = q[2].tx + q[3].rx
        let held = readByProxy - forwarded
        #expect(held <= limit + Self.slack,
                "the proxy holds \(held) bytes (limit \(limit)); written \(written), queues \(q)")
    }

    @Test(arguments: [65_536, 1_048_576])
    func responseToAClientThatStopsReadingIsHeldBackAtTheBackend(limit: Int) throws {
        let backend = try LoopbackSockets.listen()
        defer { close(backend.fd) }
        let proxy = try ProxyHarness(yaml: Self.yaml(listenerLimit: limit, clusterLimit: limit, backendPort: backend.port))
        defer { proxy.shutdown() }
        let client = try LoopbackSockets.connect(port: proxy.port)
        defer { close(client) }
        try LoopbackSockets.sendAll(client, "GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
        let upstream = try LoopbackSockets.accept(backend.fd)
        defer { close(upstream) }
        _ = try LoopbackSockets.readThrough(upstream)
        let head = "HTTP/1.1 200 OK\r\ncontent-length: \(Self.body)\r\n\r\n"
        try LoopbackSockets.sendAll(upstream, head)
        // The client reads nothing at all.
        let written = LoopbackSockets.writeUntilStalled(upstream, total: Self.body)
        #expect(written < Self.body, "the whole body went through: the proxy never stopped reading")

        let clientPort = LoopbackSockets.port(client), proxyUpPort = LoopbackSockets.port(upstream, peer: true)
        let q = try LoopbackSockets.settledQueues([
            .init(local: backend.port, remote: proxyUpPort), .init(local: proxyUpPort, remote: backend.port),
            .init(local: proxy.port, remote: clientPort), .init(local: clientPort, remote: proxy.port),
        ])
        let readByProxy = head.utf8.count + written - q[0].tx - q[1].rx
        let forwarded = q[2].tx + q[3].rx
        let held = readByProxy - forwarded
        #expect(held <= limit + Self.slack,
                "the proxy holds \(held) bytes (limit \(limit)); written \(written), queues \(q)")
    }
}
