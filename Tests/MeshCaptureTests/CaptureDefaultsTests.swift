import Testing
import MeshCapture

/// Istio's values: changing one changes what sidecar-init captures and where the pod's sidecar listens.
@Suite struct CaptureDefaultsTests {
    @Test func defaultsAreIstios() {
        #expect(CaptureDefaults.inboundPort == 15006 && CaptureDefaults.outboundPort == 15001)
        #expect(CaptureDefaults.adminPort == 15000 && CaptureDefaults.readinessPort == 15021)
        #expect(CaptureDefaults.proxyPorts == [15000, 15021])
        #expect(CaptureDefaults.proxyUID == 1337 && CaptureDefaults.proxyGID == 1337)
        #expect(CaptureDefaults.tproxyMark == 1337 && CaptureDefaults.routeTable == 133)
    }

    @Test func inboundPassthroughIs127_0_0_6And_6() {
        #expect(InboundPassthrough.ipv4 == [127, 0, 0, 6])
        #expect(InboundPassthrough.ipv4Text == "127.0.0.6")
        #expect(InboundPassthrough.ipv6.count == 16 && InboundPassthrough.ipv6.last == 6 && InboundPassthrough.ipv6.dropLast().allSatisfy { $0 == 0 })
    }
}
