import Foundation
import Testing
@testable import Intercept

/// The rendered rules for a few representative policies, compared byte for byte with files under
/// Tests/InterceptTests/Golden. After an intended change, refresh them with
/// `PILOTFISH_UPDATE_GOLDEN=1 swift test --filter RulesetGoldenTests` and review the diff.
@Suite struct RulesetGoldenTests {
    static let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    static func settings(_ flags: [String: String]) throws -> CaptureSettings {
        try CaptureSettings.resolve(flags: flags, environment: [:])
    }

    /// name → flags
    static let cases: [(String, [String: String])] = [
        ("default-tproxy", [:]),
        (
            "redirect-exclusions",
            [
                "mode": "redirect", "include-inbound-ports": "8080,9090", "exclude-inbound-ports": "15020",
                "exclude-outbound-ports": "3306,5432", "include-outbound-cidrs": "198.18.0.0/15,fd00::/8",
                "exclude-outbound-cidrs": "198.18.7.0/24,198.19.128.0/17", "exclude-interfaces": "eth1,veth-pf",
                "capture-dns": "true",
            ]
        ),
        (
            "tproxy-ipv4-custom",
            [
                "mode": "tproxy", "ipv6": "false", "inbound-port": "16006", "outbound-port": "16001", "proxy-uid": "2000",
                "proxy-gid": "2001", "tproxy-mark": "0x10", "route-table": "200", "exclude-outbound-cidrs": "198.18.0.1",
            ]
        ),
    ]

    static func render(_ s: CaptureSettings) -> (nft: String, iptables: String) {
        let ruleset = CaptureRuleset(policy: s.policy)
        let ipt = ruleset.iptables(ipv6: s.policy.ipv6).map { "# \($0.family.command)-restore\n" + $0.restoreText }.joined()
        return (NftablesRenderer.script(ruleset), ipt)
    }

    @Test(arguments: cases.map(\.0))
    func renderedRulesMatchGoldenFiles(name: String) throws {
        let flags = Self.cases.first { $0.0 == name }!.1
        let (nft, ipt) = Self.render(try Self.settings(flags))
        for (text, ext) in [(nft, "nft"), (ipt, "iptables")] {
            let url = Self.goldenDirectory.appendingPathComponent("\(name).\(ext)")
            if ProcessInfo.processInfo.environment["PILOTFISH_UPDATE_GOLDEN"] == "1" {
                try FileManager.default.createDirectory(at: Self.goldenDirectory, withIntermediateDirectories: true)
                try text.write(to: url, atomically: true, encoding: .utf8)
                continue
            }
            let golden = try String(contentsOf: url, encoding: .utf8)
            #expect(text == golden, "\(name).\(ext) differs from the golden file; refresh with PILOTFISH_UPDATE_GOLDEN=1 if intended")
        }
    }

    @Test func everyRuleHasACounterAndAComment() throws {
        for (_, flags) in Self.cases {
            let ruleset = CaptureRuleset(policy: try Self.settings(flags).policy)
            for chain in ruleset.chains {
                for rule in chain.rules {
                    #expect(rule.nftText.contains(" counter "))
                    #expect(rule.comment.hasPrefix("pilotfish: "))
                    #expect(!rule.comment.contains("\"") && !rule.comment.contains("'"))
                }
            }
            for r in ruleset.iptables(ipv6: true) {
                for line in r.tables.flatMap(\.rules) { #expect(line.contains("-m comment --comment \"pilotfish: ")) }
            }
        }
    }

    @Test func proxyTrafficIsExemptBeforeAnyOutboundCapture() throws {
        let ruleset = CaptureRuleset(policy: try Self.settings([:]).policy)
        let outbound = try #require(ruleset.chain(named: CaptureRuleset.outboundChain)).rules
        let firstCapture = try #require(outbound.firstIndex { $0.action == .redirect(port: 15001) })
        let uidReturn = try #require(outbound.firstIndex { $0.matches == [.socketUID(1337, negated: false)] && $0.action == .return })
        let gidReturn = try #require(outbound.firstIndex { $0.matches == [.socketGID(1337, negated: false)] && $0.action == .return })
        let passthrough = try #require(outbound.firstIndex { $0.matches.contains(.sourceAddress(.ipv4InboundPassthrough, negated: false)) })
        #expect(uidReturn < firstCapture && gidReturn < firstCapture && passthrough < uidReturn)
    }

    @Test func ipv6OffLimitsEveryHookToIPv4AndRendersNoIp6tables() throws {
        let s = try Self.settings(["ipv6": "false"])
        let ruleset = CaptureRuleset(policy: s.policy)
        for chain in ruleset.chains where chain.hook != nil {
            for rule in chain.rules { #expect(rule.matches.first == .family(.ipv4)) }
        }
        #expect(!NftablesRenderer.table(ruleset).contains("ip6 "))
        #expect(ruleset.iptables(ipv6: false).map(\.family) == [.ipv4])
    }

    @Test func redirectModeHasNoTproxyMarkOrRouteChain() throws {
        let ruleset = CaptureRuleset(policy: try Self.settings(["mode": "redirect"]).policy)
        let text = NftablesRenderer.table(ruleset)
        #expect(!text.contains("tproxy") && !text.contains("mark"))
        #expect(ruleset.chain(named: "prerouting")?.hook == .natPrerouting)
    }
}
