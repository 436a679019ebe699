/// Renders a `CaptureRuleset` as nft(8) text in the form `nft list table` prints it (without counter
/// values), so dry-run output can be read, diffed against the live table and even loaded with `nft -f`.
public enum NftablesRenderer {
    public static let family = "inet"
    public static let tableName = "pilotfish"

    /// The table alone, as `nft list table inet pilotfish` shows it.
    public static func table(_ ruleset: CaptureRuleset) -> String {
        var out = "table \(family) \(tableName) {\n"
        for (i, chain) in ruleset.chains.enumerated() {
            if i > 0 { out += "\n" }
            out += "\tchain \(chain.name) {\n"
            if let hook = chain.hook {
                out += "\t\t\(baseChainSpec(hook))\n"
            }
            for rule in chain.rules {
                out += "\t\t\(rule.nftText)\n"
            }
            out += "\t}\n"
        }
        out += "}\n"
        return out
    }

    /// The whole transaction `sidecar-init` sends over netlink, as an nft script: create-if-missing, delete
    /// and re-create our table, all in one atomic batch.
    public static func script(_ ruleset: CaptureRuleset) -> String {
        "table \(family) \(tableName)\ndelete table \(family) \(tableName)\n" + table(ruleset)
    }

    static func baseChainSpec(_ hook: CaptureHook) -> String {
        switch hook {
        case .natPrerouting: return "type nat hook prerouting priority dstnat; policy accept;"
        case .manglePrerouting: return "type filter hook prerouting priority mangle; policy accept;"
        case .natOutput: return "type nat hook output priority -100; policy accept;"
        case .mangleOutput: return "type route hook output priority mangle; policy accept;"
        }
    }
}

extension CaptureRule {
    /// One line of nft syntax: matches, `counter`, statements, verdict, comment.
    public var nftText: String {
        var parts = matches.map(\.nftText)
        parts.append("counter")
        parts.append(action.nftText)
        parts.append("comment \"\(comment)\"")
        return parts.joined(separator: " ")
    }
}

extension CaptureMatch {
    var nftText: String {
        switch self {
        case .family(let f): return "meta nfproto \(f == .ipv4 ? "ipv4" : "ipv6")"
        case .transport(let p): return "meta l4proto \(p.rawValue)"
        case .destinationPort(let p, let port): return "\(p.rawValue) dport \(port)"
        case .inputInterface(let name): return "iifname \"\(name)\""
        case .outputInterface(let name): return "oifname \"\(name)\""
        case .sourceAddress(let c, let negated): return "\(c.family == .ipv4 ? "ip" : "ip6") saddr \(negated ? "!= " : "")\(c)"
        case .destinationAddress(let c, let negated):
            return "\(c.family == .ipv4 ? "ip" : "ip6") daddr \(negated ? "!= " : "")\(c)"
        case .socketUID(let uid, let negated): return "meta skuid \(negated ? "!= " : "")\(uid)"
        case .socketGID(let gid, let negated): return "meta skgid \(negated ? "!= " : "")\(gid)"
        case .mark(let m): return "meta mark \(hex32(m))"
        case .connectionMark(let m): return "ct mark \(hex32(m))"
        case .transparentSocket: return "socket transparent 1"
        case .replyDirection: return "ct direction reply"
        }
    }
}

extension CaptureAction {
    var nftText: String {
        switch self {
        case .jump(let chain): return "jump \(chain)"
        case .return: return "return"
        case .redirect(let port): return "redirect to :\(port)"
        case .tproxy(let port, let mark): return "tproxy to :\(port) meta mark set \(hex32(mark)) accept"
        case .divert(let mark): return "meta mark set \(hex32(mark)) accept"
        case .refuse: return "reject with tcp reset"
        case .saveMark: return "ct mark set meta mark"
        case .restoreMark: return "meta mark set ct mark"
        }
    }
}

func hex32(_ v: UInt32) -> String {
    let digits = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
