/// The rule layout, modelled on Istio's istio-iptables so people moving over find the same behaviour:
///
///     inbound  (PREROUTING)  REDIRECT: nat prerouting ─jump→ inbound ─ redirect to :inboundPort
///                            TPROXY:   mangle prerouting ─jump→ inbound ─ tproxy to :inboundPort, mark
///     outbound (OUTPUT)      nat output ─jump→ outbound ─ redirect to :outboundPort
///     TPROXY return path     route output: mark ↔ connection mark, so the app's replies to an
///                            original-source connection route back (table `routeTable`) to the sidecar
///
/// Loop safety lives in `outbound`: the sidecar's UID/GID is never captured, its inbound passthrough from
/// 127.0.0.6 is left alone, and the sidecar calling its own pod is handed to the inbound port.
extension CaptureRuleset {
    public static let inboundChain = "inbound"
    public static let outboundChain = "outbound"

    public init(policy p: CapturePolicy) {
        var chains: [CaptureChain] = []
        let familyGuard: [CaptureMatch] = p.ipv6 ? [] : [.family(.ipv4)]

        // Inbound.
        let inboundTable: NetfilterTable = p.mode == .tproxy ? .mangle : .nat
        chains.append(
            CaptureChain(
                name: "prerouting", hook: p.mode == .tproxy ? .manglePrerouting : .natPrerouting, table: inboundTable,
                rules: [CaptureRule(familyGuard + [.transport(.tcp)], .jump(Self.inboundChain), "pilotfish: inbound TCP")]))
        var inbound: [CaptureRule] = []
        if p.mode == .tproxy {
            inbound.append(CaptureRule([.inputInterface("lo")], .return, "pilotfish: loopback is never tproxied"))
        }
        for name in p.excludeInterfaces {
            inbound.append(CaptureRule([.inputInterface(name)], .return, "pilotfish: excluded interface \(name)"))
        }
        if p.mode == .tproxy {
            // Replies to the pod's own outbound connections are not inbound connections. nft's tproxy
            // would skip them, but iptables' TPROXY drops a packet whose socket is not transparent.
            inbound.append(
                CaptureRule([.replyDirection], .return, "pilotfish: replies to connections the pod opened"))
            inbound.append(
                CaptureRule(
                    [.transport(.tcp), .transparentSocket], .divert(mark: p.tproxyMark),
                    "pilotfish: packets of established tproxy connections"))
        }
        for port in p.proxyPorts where !p.excludeInboundPorts.contains(port) {
            inbound.append(CaptureRule([.destinationPort(.tcp, port)], .return, "pilotfish: sidecar port \(port)"))
        }
        for port in p.excludeInboundPorts {
            inbound.append(CaptureRule([.destinationPort(.tcp, port)], .return, "pilotfish: excluded inbound port \(port)"))
        }
        let toInbound: CaptureAction =
            p.mode == .tproxy ? .tproxy(port: p.inboundPort, mark: p.tproxyMark) : .redirect(port: p.inboundPort)
        // nft's tproxy falls through when nothing listens on the capture port; the connection must then
        // fail rather than reach the app uncaptured. (REDIRECT to a closed port is refused by itself.)
        let failClosed = p.mode == .tproxy
        switch p.includeInboundPorts {
        case .all:
            inbound.append(CaptureRule([.transport(.tcp)], toInbound, "pilotfish: capture inbound TCP to :\(p.inboundPort)"))
            if failClosed {
                inbound.append(CaptureRule([.transport(.tcp)], .refuse, "pilotfish: no sidecar on :\(p.inboundPort), refuse"))
            }
        case .only(let ports):
            for port in ports {
                inbound.append(
                    CaptureRule([.destinationPort(.tcp, port)], toInbound, "pilotfish: capture inbound port \(port) to :\(p.inboundPort)"))
                if failClosed {
                    inbound.append(
                        CaptureRule([.destinationPort(.tcp, port)], .refuse, "pilotfish: no sidecar on :\(p.inboundPort), refuse port \(port)"))
                }
            }
        }
        chains.append(CaptureChain(name: Self.inboundChain, hook: nil, table: inboundTable, rules: inbound))

        // Outbound.
        var output = [CaptureRule(familyGuard + [.transport(.tcp)], .jump(Self.outboundChain), "pilotfish: outbound TCP")]
        if p.dnsCapturePort != nil {
            output.append(CaptureRule(familyGuard + [.transport(.udp)], .jump(Self.outboundChain), "pilotfish: outbound UDP (DNS)"))
        }
        chains.append(CaptureChain(name: "output", hook: .natOutput, table: .nat, rules: output))

        var outbound: [CaptureRule] = []
        if p.mode == .tproxy {
            outbound.append(CaptureRule([.mark(p.tproxyMark)], .return, "pilotfish: sidecar original-source connections"))
        }
        for name in p.excludeInterfaces {
            outbound.append(CaptureRule([.outputInterface(name)], .return, "pilotfish: excluded interface \(name)"))
        }
        let families: [(CIDR.Family, passthrough: CIDR, loopback: CIDR)] =
            [(.ipv4, CIDR.ipv4InboundPassthrough, CIDR.ipv4Loopback)]
            + (p.ipv6 ? [(.ipv6, CIDR.ipv6InboundPassthrough, CIDR.ipv6Loopback)] : [])
        for f in families {
            outbound.append(
                CaptureRule(
                    [.outputInterface("lo"), .sourceAddress(f.passthrough, negated: false)], .return,
                    "pilotfish: inbound passthrough from \(f.passthrough.addressText)"))
        }
        // Owner rules, UID then GID, in Istio's order.
        let owners: [(String, (Bool) -> CaptureMatch)] = [
            ("uid \(p.proxyUID)", { .socketUID(p.proxyUID, negated: $0) }),
            ("gid \(p.proxyGID)", { .socketGID(p.proxyGID, negated: $0) }),
        ]
        for (who, owner) in owners {
            for f in families {
                outbound.append(
                    CaptureRule(
                        [.outputInterface("lo"), .destinationAddress(f.loopback, negated: true), owner(false), .transport(.tcp)],
                        .redirect(port: p.inboundPort), "pilotfish: sidecar (\(who)) calling its own pod goes inbound"))
            }
            outbound.append(
                CaptureRule([.outputInterface("lo"), owner(true)], .return, "pilotfish: app traffic on loopback (not \(who))"))
            outbound.append(CaptureRule([owner(false)], .return, "pilotfish: traffic of the sidecar itself (\(who))"))
        }
        for f in families {
            outbound.append(
                CaptureRule([.destinationAddress(f.loopback, negated: false)], .return, "pilotfish: loopback destination"))
        }
        if let dns = p.dnsCapturePort {
            outbound.append(CaptureRule([.destinationPort(.udp, 53)], .redirect(port: dns), "pilotfish: DNS over UDP to :\(dns)"))
            outbound.append(CaptureRule([.destinationPort(.tcp, 53)], .redirect(port: dns), "pilotfish: DNS over TCP to :\(dns)"))
        }
        for port in p.excludeOutboundPorts {
            outbound.append(CaptureRule([.destinationPort(.tcp, port)], .return, "pilotfish: excluded outbound port \(port)"))
        }
        for cidr in p.excludeOutboundCIDRs {
            outbound.append(
                CaptureRule([.destinationAddress(cidr, negated: false)], .return, "pilotfish: excluded outbound CIDR \(cidr)"))
        }
        if let include = p.includeOutboundCIDRs {
            for cidr in include {
                outbound.append(
                    CaptureRule(
                        [.destinationAddress(cidr, negated: false), .transport(.tcp)], .redirect(port: p.outboundPort),
                        "pilotfish: capture outbound to \(cidr) to :\(p.outboundPort)"))
            }
        } else {
            outbound.append(
                CaptureRule([.transport(.tcp)], .redirect(port: p.outboundPort), "pilotfish: capture outbound TCP to :\(p.outboundPort)"))
        }
        chains.append(CaptureChain(name: Self.outboundChain, hook: nil, table: .nat, rules: outbound))

        // TPROXY return path for original-source connections (see Istio's CONNMARK rules).
        if p.mode == .tproxy {
            chains.append(
                CaptureChain(
                    name: "output_mark", hook: .mangleOutput, table: .mangle,
                    rules: [
                        CaptureRule(
                            familyGuard + [.transport(.tcp), .mark(p.tproxyMark)], .saveMark,
                            "pilotfish: remember sidecar original-source connections"),
                        CaptureRule(
                            familyGuard + [.transport(.tcp), .connectionMark(p.tproxyMark)], .restoreMark,
                            "pilotfish: route replies of original-source connections to the sidecar"),
                    ]))
        }
        self.chains = chains
    }
}
