import Foundation
import NIOCore
import NIOPosix
import Testing
import Intercept
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

@Suite struct TCPProxyStateMachineTests {
    @Test func halfCloseIsForwardedAndBothFinsClose() {
        var m = TCPProxyStateMachine()
        #expect(m.upstreamConnected() == .startProxying(downstreamAlreadyFinished: false))
        #expect(m.inputClosed(.downstream) == .shutdownOutput(towards: .upstream))
        #expect(m.isProxying)
        #expect(m.inputClosed(.upstream) == .finish(flushing: .downstream))
        #expect(m.isClosed)
        #expect(m.channelInactive(.downstream) == TCPProxyStateMachine.Action.none)
    }

    @Test func aFinReadBeforeTheUpstreamConnectedIsForwardedAfterwards() {
        var m = TCPProxyStateMachine()
        #expect(m.inputClosed(.downstream) == TCPProxyStateMachine.Action.none)
        #expect(m.upstreamConnected() == .startProxying(downstreamAlreadyFinished: true))
        #expect(m.inputClosed(.upstream) == .finish(flushing: .downstream))
    }

    @Test func downstreamLeavingWhileConnectingDropsTheNewUpstream() {
        var m = TCPProxyStateMachine()
        #expect(m.channelInactive(.downstream) == .closeAll)
        #expect(m.upstreamConnected() == .closeAll)
    }

    @Test func aSideClosingFlushesTheOtherBeforeClosing() {
        var m = TCPProxyStateMachine()
        _ = m.upstreamConnected()
        #expect(m.channelInactive(.upstream) == .finish(flushing: .downstream))
        #expect(m.channelInactive(.downstream) == TCPProxyStateMachine.Action.none)
    }

    @Test func connectFailureClosesOnce() {
        var m = TCPProxyStateMachine()
        #expect(m.upstreamConnectFailed() == .closeAll)
        #expect(m.upstreamConnectFailed() == TCPProxyStateMachine.Action.none)
    }

    @Test func aConnectionRBACDeniesIsRefusedAndNeverConnected() {
        var m = TCPProxyStateMachine()
        #expect(m.accessDenied() == .refuseDownstream)
        #expect(m.isClosed)
        #expect(m.upstreamConnected() == .closeAll)
        #expect(m.channelInactive(.downstream) == TCPProxyStateMachine.Action.none)
    }

    @Test func idleTimeoutOnlyWhileProxying() {
        var m = TCPProxyStateMachine()
        #expect(m.idleTimeoutFired() == TCPProxyStateMachine.Action.none)
        _ = m.upstreamConnected()
        #expect(m.idleTimeoutFired() == .closeAll)
        #expect(m.idleTimeoutFired() == TCPProxyStateMachine.Action.none)
    }
}

/// tcp_proxy and ORIGINAL_DST configuration.
@Suite struct TCPProxyConfigTests {
    static func yaml(filter: String = "", cluster: String = "", listenerExtra: String = "") -> String {
        """
        static_resources:
          listeners:
          - name: tcp
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
        \(listenerExtra)
            filter_chains:
            - filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: passthrough
                  cluster: original
        \(filter)
          clusters:
          - name: original
            connect_timeout: 1s
            type: ORIGINAL_DST
            lb_policy: CLUSTER_PROVIDED
        \(cluster)
        """
    }

    func error(_ text: String) -> ConfigError? {
        do {
            _ = try Bootstrap.load(text: text)
            return nil
        } catch {
            return error as? ConfigError
        }
    }

    @Test func transparentOriginalDstListenerWithTCPProxyLoads() throws {
        let b = try Bootstrap.load(
            text: Self.yaml(
                filter: "          idle_timeout: 30s",
                listenerExtra: """
                    transparent: true
                    freebind: true
                    listener_filters:
                    - name: envoy.filters.listener.original_dst
                      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
                """))
        let l = b.listeners[0]
        #expect(l.transparent && l.freebind && l.originalDestination)
        guard case .tcpProxy(let t) = l.network else {
            Issue.record("expected tcp_proxy")
            return
        }
        #expect(t.statPrefix == "passthrough" && t.cluster == "original" && t.idleTimeout == .seconds(30))
        #expect(b.clusters[0].type == .ORIGINAL_DST && b.clusters[0].lbPolicy == .CLUSTER_PROVIDED)
    }

    @Test func originalSrcListenerFilterCarriesItsMark() throws {
        let filter = """
                listener_filters:
                - name: envoy.filters.listener.original_src
                  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc, mark: 1337}
            """
        let b = try Bootstrap.load(text: Self.yaml(listenerExtra: filter))
        #expect(b.listeners[0].originalSourceMark == 1337)
        #expect(Privileges.keptAfterStart(b) == [Privileges.netAdmin])
        #expect(Privileges.needs(b).contains { $0.name == "CAP_NET_ADMIN" })
        let bindPort = error(Self.yaml(listenerExtra: filter.replacingOccurrences(of: "mark: 1337", with: "mark: 1337, bind_port: true")))
        #expect(bindPort?.message.contains("bind_port") == true)
    }

    @Test func podDefaultsAgreeWithSidecarInitAndLoad() throws {
        let capture = CapturePolicy()
        #expect(PodDefaults.outboundPort == Int(capture.outboundPort))
        #expect(PodDefaults.inboundPort == Int(capture.inboundPort))
        #expect(PodDefaults.tproxyMark == Int(capture.tproxyMark))
        #expect(Set([PodDefaults.adminPort, PodDefaults.readinessPort]) == Set(capture.proxyPorts.map(Int.init)))
        #expect(capture.proxyUID == 1337)
        for mode in PodDefaults.CaptureMode.allCases {
            let b = try Bootstrap.load(text: PodDefaults.yaml(captureMode: mode))
            let ports = Set(b.listeners.map(\.address.port))
            #expect(ports == [PodDefaults.outboundPort, PodDefaults.inboundPort, PodDefaults.readinessPort])
            #expect(b.admin?.address.port == PodDefaults.adminPort && b.admin?.address.address == "127.0.0.1")
            let inbound = try #require(b.listeners.first { $0.name == "virtual_inbound" })
            #expect(inbound.transparent == (mode == .tproxy))
            #expect(inbound.originalSourceMark == (mode == .tproxy ? 1337 : nil))
            #expect(inbound.originalDestination && inbound.httpInspector)
        }
    }

    @Test func twoChainsWithTheSameMatchAreRefused() {
        let chain = """
                - filter_chain_match: {destination_port: 8080}
                  filters:
                  - name: envoy.filters.network.tcp_proxy
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: p, cluster: original}

            """
        let text = Self.yaml().replacingOccurrences(of: "    filter_chains:\n", with: "    filter_chains:\n" + chain + chain)
        #expect(text.contains("destination_port: 8080"))
        let e = error(text)
        #expect(e?.message.contains("same filter_chain_match") == true)
    }

    @Test func lowPortsNeedBindServiceWhereTheKernelSaysSo() throws {
        let start = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1024
        let b = try Bootstrap.load(text: Self.yaml().replacingOccurrences(of: "port_value: 0", with: "port_value: 80"))
        let needs = Privileges.needs(b).map(\.name)
        #expect(needs.contains("CAP_NET_BIND_SERVICE") == (start > 80))
        #expect(!Privileges.needs(try Bootstrap.load(text: Self.yaml())).contains { $0.name == "CAP_NET_BIND_SERVICE" })
    }

    @Test func useOriginalDstAndVirtualListenersLoad() throws {
        let b = try Bootstrap.load(text: Self.yaml(listenerExtra: "    use_original_dst: true\n    bind_to_port: false"))
        #expect(b.listeners[0].useOriginalDst && !b.listeners[0].bindToPort && b.listeners[0].needsChainSelection)
    }

    @Test func idleTimeoutZeroDisablesAndDefaultIsAnHour() throws {
        let off = try Bootstrap.load(text: Self.yaml(filter: "          idle_timeout: 0s"))
        guard case .tcpProxy(let t) = off.listeners[0].network else { return }
        #expect(t.idleTimeout == nil)
        let def = try Bootstrap.load(text: Self.yaml())
        guard case .tcpProxy(let d) = def.listeners[0].network else { return }
        #expect(d.idleTimeout == .seconds(3600))
    }

    @Test func unsupportedListenerFilterIsNamed() {
        let e = error(
            Self.yaml(listenerExtra: """
                    listener_filters:
                    - name: envoy.filters.listener.proxy_protocol
                      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol}
                """))
        #expect(e?.path == "static_resources.listeners[0].listener_filters[0]")
        #expect(e?.message.contains("proxy_protocol") == true && e?.message.contains("not supported by Pilotfish yet") == true)
    }

    @Test func unsupportedTCPProxyFieldIsNamed() {
        let e = error(Self.yaml(filter: "          max_connect_attempts: 3"))
        #expect(e?.path.hasSuffix("typed_config.max_connect_attempts") == true)
        #expect(e?.message.contains("not supported by Pilotfish yet") == true)
    }

    @Test func originalDstClusterRules() {
        #expect(
            error(Self.yaml().replacingOccurrences(of: "lb_policy: CLUSTER_PROVIDED", with: "lb_policy: ROUND_ROBIN"))?.message
                .contains("needs lb_policy: CLUSTER_PROVIDED") == true)
        let withEndpoints = Self.yaml(
            cluster: "    load_assignment: {cluster_name: original, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}")
        #expect(error(withEndpoints)?.message.contains("cannot have load_assignment endpoints") == true)
        let unknown = Self.yaml().replacingOccurrences(of: "cluster: original", with: "cluster: nowhere")
        #expect(error(unknown)?.message.contains("unknown cluster 'nowhere'") == true)
    }

    @Test func httpRouteToOriginalDstClusterLoads() throws {
        let text = ProxyConfig.single(port: 1) + """
              - name: original
                connect_timeout: 1s
                type: ORIGINAL_DST
                lb_policy: CLUSTER_PROVIDED

            """
        let b = try Bootstrap.load(text: text.replacingOccurrences(of: "route: {cluster: backend}", with: "route: {cluster: original}"))
        #expect(b.clusters.last?.type == .ORIGINAL_DST)
    }
}

/// tcp_proxy through the real server on loopback sockets.
@Suite(.serialized) struct TCPProxyIntegrationTests {
    static func config(upstreamPort: Int, idle: String = "5s") -> String {
        """
        admin:
          address: {socket_address: {address: 127.0.0.1, port_value: 0}}
        static_resources:
          listeners:
          - name: tcp
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: echo
                  cluster: echo
                  idle_timeout: \(idle)
          clusters:
          - name: echo
            connect_timeout: 1s
            type: STATIC
            load_assignment: {cluster_name: echo, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(upstreamPort)}}}}]}]}
        """
    }

    @Test func bytesArePassedBothWaysExactlyAndHalfCloseIsForwarded() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try ProxyHarness(yaml: Self.config(upstreamPort: echo.port))
        defer { proxy.shutdown() }
        let payload = (0..<(3 * 1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let got = try BlockingSocket.roundTrip(port: proxy.port, sending: payload, halfClose: true)
        #expect(got == payload)
        #expect(try proxy.stat("tcp.echo.downstream_cx_total") == 1)
        #expect(try proxy.stat("tcp.echo.downstream_cx_rx_bytes_total") == payload.count)
        #expect(try proxy.stat("tcp.echo.downstream_cx_tx_bytes_total") == payload.count)
        #expect(try proxy.stat("cluster.echo.upstream_cx_total") == 1)
        #expect(try proxy.stat("cluster.echo.upstream_cx_tx_bytes_total") == payload.count)
    }

    @Test func idleConnectionsAreClosedAndCounted() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try ProxyHarness(yaml: Self.config(upstreamPort: echo.port, idle: "0.3s"))
        defer { proxy.shutdown() }
        let s = try BlockingSocket(port: proxy.port, timeout: 5)
        defer { s.close() }
        let start = Date()
        #expect(try s.readToEOF().isEmpty)
        #expect(Date().timeIntervalSince(start) >= 0.25)
        #expect(try proxy.stat("tcp.echo.idle_timeout") == 1)
    }

    @Test func refusedUpstreamClosesTheDownstreamAndCountsTheFailure() throws {
        let closedPort = try EchoServer.unusedPort()
        let proxy = try ProxyHarness(yaml: Self.config(upstreamPort: closedPort))
        defer { proxy.shutdown() }
        let s = try BlockingSocket(port: proxy.port, timeout: 5)
        defer { s.close() }
        #expect(try s.readToEOF().isEmpty)
        #expect(try proxy.stat("cluster.echo.upstream_cx_connect_fail") == 1)
        #expect(try proxy.stat("cluster.echo.upstream_cx_total") == 1)
        #expect(try proxy.stat("cluster.echo.upstream_cx_destroy") == 1)
        #expect(try proxy.stat("cluster.echo.upstream_cx_active") == 0)
        // A listener of one chain counts its connections (no FilterChainDispatcher does it for it).
        #expect(try proxy.stat("listener.127.0.0.1_0.downstream_cx_total") == 1)
    }
}

/// A loopback echo server: echoes until EOF, then half-closes (so half-close must be forwarded).
final class EchoServer: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let channel: Channel
    var port: Int { channel.localAddress!.port! }

    init() throws {
        channel = try ServerBootstrap(group: group)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(Echo()) } }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    static func unusedPort() throws -> Int {
        let s = try EchoServer()
        let p = s.port
        s.stop()
        return p
    }

    final class Echo: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
        func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let e = event as? ChannelEvent, case .inputClosed = e { context.close(mode: .output, promise: nil) }
        }
    }
}

/// A plain blocking client socket (the test's side is ordinary POSIX, not NIO).
final class BlockingSocket: @unchecked Sendable {
    let fd: Int32

    init(port: Int, timeout: Double) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(port).bigEndian
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            close()
            throw POSIXError(.ECONNREFUSED)
        }
    }

    func close() { _ = Glibc.close(fd) }

    func write(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw POSIXError(.EPIPE) }
            off += n
        }
    }

    func readToEOF() throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return out }
            if n < 0 { throw POSIXError(.ETIMEDOUT) }
            out += buf[0..<n]
        }
    }

    /// Sends everything (from a second thread, so neither side's buffers can deadlock), optionally
    /// half-closes, and reads until EOF.
    static func roundTrip(port: Int, sending payload: [UInt8], halfClose: Bool) throws -> [UInt8] {
        let s = try BlockingSocket(port: port, timeout: 10)
        defer { s.close() }
        let writer = Thread {
            try? s.write(payload)
            if halfClose { shutdown(s.fd, Int32(SHUT_WR)) }
        }
        writer.start()
        return try s.readToEOF()
    }
}
