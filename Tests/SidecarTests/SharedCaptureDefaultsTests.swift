import Intercept
import MeshCapture
import NIOCore
import NIOPosix
import Testing
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// sidecar-init (Intercept's CapturePolicy, its rules) and `sidecar --pod-defaults` (PodDefaults) read the
/// same MeshCapture values, so the pod's sidecar listens exactly where the rules send connections.
@Suite struct SharedCaptureDefaultsTests {
    @Test func bothSidesReadTheSharedConstants() {
        let policy = CapturePolicy()
        #expect(policy.inboundPort == CaptureDefaults.inboundPort && PodDefaults.inboundPort == Int(CaptureDefaults.inboundPort))
        #expect(policy.outboundPort == CaptureDefaults.outboundPort && PodDefaults.outboundPort == Int(CaptureDefaults.outboundPort))
        #expect(policy.proxyPorts == CaptureDefaults.proxyPorts)
        #expect(PodDefaults.adminPort == Int(CaptureDefaults.adminPort) && PodDefaults.readinessPort == Int(CaptureDefaults.readinessPort))
        #expect(policy.tproxyMark == CaptureDefaults.tproxyMark && PodDefaults.tproxyMark == Int(CaptureDefaults.tproxyMark))
        #expect(policy.proxyUID == CaptureDefaults.proxyUID && policy.proxyGID == CaptureDefaults.proxyGID)
        #expect(policy.routeTable == CaptureDefaults.routeTable)
        #expect(CIDR.ipv4InboundPassthrough.address == InboundPassthrough.ipv4)
        #expect(CIDR.ipv6InboundPassthrough.address == InboundPassthrough.ipv6)
        #expect(PodDefaults.inboundPassthroughSource == InboundPassthrough.ipv4Text)
    }

    /// The generated config, loaded: its capture listeners are the policy's capture ports, its other
    /// listeners and admin are the ports the rules never capture, the original_src mark is the rules'
    /// mark, and REDIRECT's passthrough source is the address the outbound rules leave alone.
    @Test(arguments: PodDefaults.CaptureMode.allCases)
    func theGeneratedConfigListensWhereThePolicyCaptures(mode: PodDefaults.CaptureMode) throws {
        let policy = CapturePolicy()
        let b = try Bootstrap.load(text: PodDefaults.yaml(captureMode: mode))
        let port = { (name: String) in b.listeners.first { $0.name == name }?.address.port }
        #expect(port("virtual_outbound") == Int(policy.outboundPort))
        #expect(port("virtual_inbound") == Int(policy.inboundPort))
        let uncaptured = Set(b.listeners.map(\.address.port)).subtracting([Int(policy.outboundPort), Int(policy.inboundPort)])
            .union([b.admin?.address.port].compactMap { $0 })
        #expect(uncaptured == Set(policy.proxyPorts.map(Int.init)))

        let inbound = try #require(b.listeners.first { $0.name == "virtual_inbound" })
        #expect(inbound.originalSourceMark == (mode == .tproxy ? policy.tproxyMark : nil))
        let passthrough = try #require(b.clusters.first { $0.name == "inbound_passthrough" })
        let leftAlone = CaptureRuleset(policy: policy).chain(named: CaptureRuleset.outboundChain)?.rules
            .compactMap { rule in
                rule.matches.lazy.compactMap { m -> String? in
                    if case .sourceAddress(let c, negated: false) = m, c.family == .ipv4, rule.action == .return { return c.addressText }
                    return nil
                }.first
            } ?? []
        #expect(leftAlone == [InboundPassthrough.ipv4Text])
        #expect(passthrough.upstreamSourceAddress?.address == (mode == .redirect ? leftAlone.first : nil))
    }

    /// The sidecar's adapter over the shared lookup, on a real NIO socket: no NAT, so the original
    /// destination is the local address, unless that is the listener itself (which would loop).
    @Test func theSidecarsLookupReadsTheAcceptedSocket() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let b = try Bootstrap.load(text: PodDefaults.yaml(captureMode: .redirect))
        let listener = try #require(b.listeners.first { $0.name == "virtual_outbound" })
        let found = group.next().makePromise(of: [SocketAddress?].self)
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    var itself = listener
                    itself.address.port = ch.localAddress?.port ?? 0
                    found.succeed([
                        Sidecar.OriginalDestination.lookup(ch, listener: listener),
                        Sidecar.OriginalDestination.lookup(ch, listener: itself),
                        ch.localAddress,
                    ])
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let client = try ClientBootstrap(group: group).connect(to: server.localAddress!).wait()
        defer { try? client.close().wait() }
        let results = try found.futureResult.wait()
        #expect(results[0] != nil && results[0] == results[2] && results[0]?.port == server.localAddress?.port)
        #expect(results[1] == nil)
    }
}
