/// The capture rules for one address family in iptables terms: per table, the chains we own, the single
/// hook rule per built-in chain that jumps into ours, and our rules. Our rules never live in built-in
/// chains, so cleanup is exact: drop the hook rules, flush and delete the `PILOTFISH_*` chains.
public struct IptablesRuleset: Equatable, Sendable {
    public enum Family: String, Sendable {
        case ipv4, ipv6
        /// The command prefix: `iptables` or `ip6tables`.
        public var command: String { self == .ipv4 ? "iptables" : "ip6tables" }
    }

    public struct HookRule: Equatable, Sendable {
        public var builtinChain: String
        public var ourChain: String
        /// The rule as iptables-save prints it after `-A <builtin> `.
        public var spec: String { "-m comment --comment \"\(IptablesRuleset.hookComment)\" -j \(ourChain)" }
    }

    public struct Table: Equatable, Sendable {
        public var table: NetfilterTable
        public var chains: [String]
        public var hooks: [HookRule]
        /// `-A CHAIN ...` lines.
        public var rules: [String]
    }

    public static let chainPrefix = "PILOTFISH_"
    public static let hookComment = "pilotfish: capture hook"

    public var family: Family
    public var tables: [Table]

    public static func chainName(_ nftName: String) -> String {
        chainPrefix + nftName.uppercased()
    }

    public init(_ ruleset: CaptureRuleset, family: Family) {
        self.family = family
        var tables: [Table] = []
        func index(_ t: NetfilterTable) -> Int {
            if let i = tables.firstIndex(where: { $0.table == t }) { return i }
            tables.append(Table(table: t, chains: [], hooks: [], rules: []))
            return tables.count - 1
        }
        let wanted: CIDR.Family = family == .ipv4 ? .ipv4 : .ipv6
        for chain in ruleset.chains {
            let t = index(chain.table)
            let ours = Self.chainName(chain.name)
            tables[t].chains.append(ours)
            if let hook = chain.hook {
                let builtin: String
                switch hook {
                case .natPrerouting, .manglePrerouting: builtin = "PREROUTING"
                case .natOutput, .mangleOutput: builtin = "OUTPUT"
                }
                tables[t].hooks.append(HookRule(builtinChain: builtin, ourChain: ours))
            }
            for rule in chain.rules {
                if let f = rule.family, f != wanted { continue }
                if case .divert = rule.action, !tables[t].chains.contains(Self.divertChain) {
                    tables[t].chains.append(Self.divertChain)
                }
                tables[t].rules.append("-A \(ours) " + Self.spec(rule, family: family))
            }
        }
        // The divert chain's own rules (MARK, then ACCEPT), once per table that uses it.
        for i in tables.indices where tables[i].chains.contains(Self.divertChain) {
            let mark = ruleset.chains.lazy.flatMap(\.rules).compactMap { rule -> UInt32? in
                if case .divert(let m) = rule.action { return m }
                return nil
            }.first ?? 0
            tables[i].rules.append(
                "-A \(Self.divertChain) -m comment --comment \"pilotfish: mark for the tproxy route table\" -j MARK --set-xmark \(IptablesRuleset.hex(mark))/0xffffffff")
            tables[i].rules.append("-A \(Self.divertChain) -m comment --comment \"pilotfish: deliver to the sidecar\" -j ACCEPT")
        }
        // mangle before nat, as iptables-save orders them.
        self.tables = tables.sorted { $0.table == .mangle && $1.table == .nat }
    }

    static let divertChain = chainPrefix + "DIVERT"

    /// iptables-restore input that installs everything from scratch (the dry-run view). The backend builds
    /// its own input from the same tables, adding the removal of a previous installation.
    public var restoreText: String {
        var out = ""
        for t in tables {
            out += "*\(t.table.rawValue)\n"
            for c in t.chains { out += ":\(c) - [0:0]\n" }
            for h in t.hooks { out += "-A \(h.builtinChain) \(h.spec)\n" }
            for r in t.rules { out += r + "\n" }
            out += "COMMIT\n"
        }
        return out
    }

    static func spec(_ rule: CaptureRule, family: Family) -> String {
        var parts: [String] = []
        var proto: TransportProtocol?
        for m in rule.matches {
            switch m {
            case .transport(let p), .destinationPort(let p, _): proto = p
            default: break
            }
        }
        // iptables-save order: addresses, interfaces, protocol, then match modules.
        for m in rule.matches {
            switch m {
            case .sourceAddress(let c, let neg): parts.append("\(neg ? "! " : "")-s \(c.prefixedDescription)")
            case .destinationAddress(let c, let neg): parts.append("\(neg ? "! " : "")-d \(c.prefixedDescription)")
            default: break
            }
        }
        for m in rule.matches {
            switch m {
            case .inputInterface(let n): parts.append("-i \(n)")
            case .outputInterface(let n): parts.append("-o \(n)")
            default: break
            }
        }
        if let p = proto { parts.append("-p \(p.rawValue)") }
        for m in rule.matches {
            switch m {
            case .destinationPort(let p, let port): parts.append("-m \(p.rawValue) --dport \(port)")
            case .socketUID(let uid, let neg): parts.append("-m owner \(neg ? "! " : "")--uid-owner \(uid)")
            case .socketGID(let gid, let neg): parts.append("-m owner \(neg ? "! " : "")--gid-owner \(gid)")
            case .mark(let m): parts.append("-m mark --mark \(hex(m))")
            case .connectionMark(let m): parts.append("-m connmark --mark \(hex(m))")
            case .transparentSocket: parts.append("-m socket --transparent")
            case .replyDirection: parts.append("-m conntrack --ctdir REPLY")
            case .family, .transport, .inputInterface, .outputInterface, .sourceAddress, .destinationAddress: break
            }
        }
        parts.append("-m comment --comment \"\(rule.comment)\"")
        switch rule.action {
        case .jump(let chain): parts.append("-j \(chainName(chain))")
        case .return: parts.append("-j RETURN")
        case .redirect(let port): parts.append("-j REDIRECT --to-ports \(port)")
        case .tproxy(let port, let mark):
            parts.append("-j TPROXY --on-port \(port) --on-ip \(family == .ipv4 ? "0.0.0.0" : "::") --tproxy-mark \(hex(mark))/0xffffffff")
        case .divert: parts.append("-j \(divertChain)")
        // REJECT is not allowed in mangle PREROUTING; TPROXY already drops when nothing listens, so this
        // DROP only states the same intent.
        case .refuse: parts.append("-j DROP")
        case .saveMark: parts.append("-j CONNMARK --save-mark")
        case .restoreMark: parts.append("-j CONNMARK --restore-mark")
        }
        return parts.joined(separator: " ")
    }

    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}

extension CaptureRuleset {
    /// The iptables view: IPv4 always, IPv6 when the policy captures it.
    public func iptables(ipv6: Bool) -> [IptablesRuleset] {
        [IptablesRuleset(self, family: .ipv4)] + (ipv6 ? [IptablesRuleset(self, family: .ipv6)] : [])
    }
}
