/// What `sidecar-init apply`, `cleanup` and `--dry-run` do, for either backend. Order for apply: check
/// capabilities, policy routing (TPROXY), the rules in one transaction, read-back verification; a failure
/// undoes the routing this run added, so nothing is half-applied.
public struct CaptureInstaller {
    public let settings: CaptureSettings
    public let ruleset: CaptureRuleset

    public init(settings: CaptureSettings) {
        self.settings = settings
        self.ruleset = CaptureRuleset(policy: settings.policy)
    }

    var routing: PolicyRouting {
        PolicyRouting(mark: settings.policy.tproxyMark, table: settings.policy.routeTable, ipv6: settings.policy.ipv6)
    }

    /// The exact rules for the chosen backend, without touching the system.
    public func dryRunText() -> String {
        let p = settings.policy
        var out = "# sidecar-init --dry-run: backend \(settings.backend.rawValue), mode \(p.mode.rawValue)\n"
        switch settings.backend {
        case .nftables:
            out += "# One netlink transaction (libnftnl), equivalent to `nft -f` of:\n"
            out += NftablesRenderer.script(ruleset)
        case .iptables:
            for r in ruleset.iptables(ipv6: p.ipv6) {
                out += "# \(r.family.command)-restore --noflush (variant \(settings.iptablesVariant.rawValue)); previous PILOTFISH_* chains and hooks are replaced\n"
                out += r.restoreText
            }
        }
        if p.mode == .tproxy {
            out += "# Policy routing over rtnetlink:\n"
            for c in routing.commands { out += "# \(c)\n" }
        }
        return out
    }

    public func apply(injectFault: Bool = false) throws(CaptureError) -> String {
        try Capabilities.requireNetAdmin(for: "installing capture rules")
        let p = settings.policy
        let changes = p.mode == .tproxy ? try routing.apply() : PolicyRouting.Changes()
        var where_: String
        do {
            switch settings.backend {
            case .nftables:
                let nft = NftablesBackend()
                try nft.apply(ruleset, injectFault: injectFault)
                try nft.verify(ruleset)
                where_ = "nftables table inet \(nft.tableName)"
            case .iptables:
                let variant = try IptablesBackend.detect(settings.iptablesVariant)
                let ipt = IptablesBackend(variant: variant)
                let rulesets = ruleset.iptables(ipv6: p.ipv6)
                try ipt.apply(rulesets, injectFault: injectFault)
                try ipt.verify(rulesets)
                where_ = "iptables-\(variant.rawValue) PILOTFISH_* chains (\(rulesets.map(\.family.command).joined(separator: ", ")))"
            }
        } catch {
            routing.undo(changes)
            throw error
        }
        // One installation of ours at a time: switching backends removes the other backend's rules.
        let replaced = try removeOtherBackend()
        if p.mode == .redirect {
            // A previous TPROXY run's routing is ours and no longer wanted.
            try routing.remove()
        }
        var summary = "applied \(ruleset.ruleCount) rules (\(p.mode.rawValue)) in \(where_), verified by read-back"
        if p.mode == .tproxy {
            summary += "; policy routing fwmark \(IptablesRuleset.hex(p.tproxyMark)) lookup \(p.routeTable)"
            summary += changes.isEmpty ? " (already present)" : " (added)"
        }
        if !replaced.isEmpty { summary += "; removed the previous installation in \(replaced.joined(separator: ", "))" }
        return summary
    }

    func removeOtherBackend() throws(CaptureError) -> [String] {
        var removed: [String] = []
        switch settings.backend {
        case .iptables:
            if try NftablesBackend().remove() { removed.append("nftables table inet \(NftablesRenderer.tableName)") }
        case .nftables:
            for variant in IptablesVariant.allCases where CommandRunner.locate(variant.command(.ipv4, "restore")) != nil {
                let ipt = IptablesBackend(variant: variant)
                if try ipt.isInstalled() {
                    let n = try ipt.remove()
                    removed.append("\(n) iptables-\(variant.rawValue) chains")
                }
            }
        }
        return removed
    }

    /// Removes whatever of ours exists: the nftables table, iptables chains of either variant, routing.
    public func cleanup() throws(CaptureError) -> String {
        try Capabilities.requireNetAdmin(for: "removing capture rules")
        var removed: [String] = []
        if try NftablesBackend().remove() { removed.append("nftables table inet \(NftablesRenderer.tableName)") }
        for variant in IptablesVariant.allCases where CommandRunner.locate(variant.command(.ipv4, "restore")) != nil {
            let n = try IptablesBackend(variant: variant).remove()
            if n > 0 { removed.append("\(n) iptables-\(variant.rawValue) chains") }
        }
        let routes = try routing.remove()
        if routes > 0 { removed.append("\(routes) policy routing entries") }
        return removed.isEmpty ? "nothing to clean up" : "removed " + removed.joined(separator: ", ")
    }
}
