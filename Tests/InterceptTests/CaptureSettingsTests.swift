import Testing
@testable import Intercept

@Suite struct CaptureSettingsTests {
    func resolve(_ flags: [String: String], env: [String: String] = [:]) throws(PolicyError) -> CaptureSettings {
        try CaptureSettings.resolve(flags: flags, environment: env)
    }

    func error(_ flags: [String: String], env: [String: String] = [:]) -> String {
        do {
            _ = try resolve(flags, env: env)
            return "no error"
        } catch {
            return error.message
        }
    }

    @Test func defaultsAreTproxyNftablesCaptureEverything() throws {
        let s = try resolve([:])
        #expect(s.backend == .nftables)
        #expect(s.policy.mode == .tproxy)
        #expect(s.policy.inboundPort == 15006 && s.policy.outboundPort == 15001)
        #expect(s.policy.proxyUID == 1337 && s.policy.proxyGID == 1337)
        #expect(s.policy.includeInboundPorts == .all && s.policy.includeOutboundCIDRs == nil)
        #expect(s.policy.tproxyMark == 1337 && s.policy.routeTable == 133)
        #expect(s.policy.ipv6 && s.policy.dnsCapturePort == nil && !s.dryRun)
    }

    @Test func environmentFillsUnsetFlagsAndFlagsWin() throws {
        let s = try resolve(
            ["inbound-port": "16006"],
            env: ["PILOTFISH_MODE": "REDIRECT", "PILOTFISH_INBOUND_PORT": "17006", "PILOTFISH_EXCLUDE_INBOUND_PORTS": "8081, 8082"])
        #expect(s.policy.mode == .redirect)
        #expect(s.policy.inboundPort == 16006)
        #expect(s.policy.excludeInboundPorts == [8081, 8082])
    }

    @Test func everyFlagHasAnEnvironmentVariable() {
        #expect(CaptureSettings.environmentName("exclude-outbound-cidrs") == "PILOTFISH_EXCLUDE_OUTBOUND_CIDRS")
        #expect(Set(CaptureSettings.flagNames.map(CaptureSettings.environmentName)).count == CaptureSettings.flagNames.count)
    }

    @Test func badValuesNameTheSettingAndTheValue() {
        #expect(error(["inbound-port": "70000"]).contains("--inbound-port: port 70000 is out of range"))
        #expect(error([:], env: ["PILOTFISH_OUTBOUND_PORT": "http"]).contains("PILOTFISH_OUTBOUND_PORT: 'http' is not a port number"))
        #expect(error(["mode": "bogus"]).contains("unknown capture mode 'bogus'"))
        #expect(error(["backend": "pf"]).contains("unknown backend 'pf'"))
        #expect(error(["exclude-outbound-cidrs": "10.1.2.3/8"]).contains("--exclude-outbound-cidrs: '10.1.2.3/8' has bits set"))
        #expect(error(["include-outbound-cidrs": "*,10.0.0.0/8"]).contains("'*' cannot be combined"))
        #expect(error(["exclude-inbound-ports": "*"]).contains("'*' is not allowed here"))
        #expect(error(["proxy-uid": "-1"]).contains("--proxy-uid: '-1' is not"))
        #expect(error(["ipv6": "maybe"]).contains("--ipv6: 'maybe' is not a boolean"))
        #expect(error(["exclude-interfaces": "a-very-long-interface-name"]).contains("1 to 15 bytes"))
    }

    @Test func conflictingSettingsAreRefused() {
        #expect(error(["inbound-port": "15001"]).contains("both 15001"))
        #expect(error(["include-inbound-ports": "8080", "exclude-inbound-ports": "8080"]).contains("both included"))
        #expect(error(["include-inbound-ports": "15006"]).contains("capture port"))
        #expect(error(["include-outbound-cidrs": "198.18.0.0/15", "exclude-outbound-cidrs": "198.18.0.0/15"]).contains("both included"))
        #expect(error(["ipv6": "false", "exclude-outbound-cidrs": "fd00::/8"]).contains("IPv6 CIDR fd00::/8"))
        #expect(error(["iptables-variant": "legacy"]).contains("only applies to --backend iptables"))
        #expect(error(["dns-port": "5353"]).contains("add --capture-dns"))
        #expect(error(["capture-dns": "true", "dns-port": "15001"]).contains("collides"))
        #expect(error(["route-table": "254"]).contains("reserved"))
        #expect(error(["tproxy-mark": "0"]).contains("must not be 0"))
    }

    @Test func capabilitiesAreReadFromProcStatus() {
        let caps = Capabilities.parse(status: "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n")
        #expect(caps?.has(Capabilities.netAdmin) == true)
        #expect(caps?.has(Capabilities.netRaw) == false)
        #expect(Capabilities.parse(status: "CapEff:\t0000000000000000\n")?.has(Capabilities.netAdmin) == false)
    }
}
