import Foundation

/// Drives iptables-restore / ip6tables-restore (nft or legacy variant). Every change for a family is one
/// `--noflush` restore that flushes our chains, swaps the hook rules and refills the chains; on failure the
/// tables are put back from the `-save` output taken just before, so nothing is half-applied.
public struct IptablesBackend {
    public let variant: IptablesVariant

    public init(variant: IptablesVariant) { self.variant = variant }

    /// Picks the variant: the forced one, else the one that already has rules (nft when neither has).
    public static func detect(_ choice: IptablesVariant.Choice) throws(CaptureError) -> IptablesVariant {
        switch choice {
        case .nft: return .nft
        case .legacy: return .legacy
        case .auto:
            var counts: [IptablesVariant: Int] = [:]
            for v in IptablesVariant.allCases {
                guard CommandRunner.locate(v.command(.ipv4, "save")) != nil else { continue }
                var n = 0
                for family in [IptablesRuleset.Family.ipv4, .ipv6] where v.mayHaveRules(family) {
                    guard let r = try? CommandRunner.run(v.command(family, "save"), []), r.status == 0 else { continue }
                    n += r.stdout.split(separator: "\n").filter { $0.hasPrefix("-A ") }.count
                }
                counts[v] = n
            }
            if counts.isEmpty {
                throw CaptureError("neither iptables-nft nor iptables-legacy is installed; install iptables or use --backend nftables")
            }
            if let legacy = counts[.legacy], legacy > 0, legacy > (counts[.nft] ?? 0) { return .legacy }
            return counts[.nft] != nil ? .nft : .legacy
        }
    }

    /// Installs the rules for every family, replacing a previous installation of ours.
    public func apply(_ rulesets: [IptablesRuleset], injectFault: Bool = false) throws(CaptureError) {
        var done: [(IptablesRuleset.Family, [NetfilterTable: String])] = []
        for ruleset in rulesets {
            let before = try save(ruleset.family)
            let input = restoreInput(installing: ruleset, over: before, injectFault: injectFault)
            // iptables-restore commits table by table; check the whole input first (`--test` parses and
            // resolves every chain, target and match without committing), so a bad rule changes nothing.
            let check = try CommandRunner.run(variant.command(ruleset.family, "restore"), ["--noflush", "--wait", "--test"], input: input)
            var result = check
            if check.status == 0 {
                result = try CommandRunner.run(variant.command(ruleset.family, "restore"), ["--noflush", "--wait"], input: input)
            }
            if result.status != 0 {
                // Only a commit can have changed anything; put back what the failed commit may have left.
                if check.status == 0 { rollback(ruleset.family, to: before) }
                for (family, state) in done.reversed() { rollback(family, to: state) }
                let stderr = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                var hint = ""
                if stderr.contains("No chain/target/match") && input.contains("-j TPROXY") {
                    hint = " (if this kernel lacks xt_TPROXY/xt_socket, load them or use --mode redirect)"
                }
                throw CaptureError(
                    "\(variant.command(ruleset.family, "restore")) refused the rules: \(stderr)\(hint); the previous rules were restored")
            }
            done.append((ruleset.family, before))
        }
        // Only now that every family is in place, delete the chains of ours the new rules no longer use
        // (flushed and unhooked above). Deleting them earlier would make a rollback re-create them.
        for ruleset in rulesets {
            let now = try save(ruleset.family)
            var input = ""
            for (table, text) in now {
                let wanted = ruleset.tables.first { $0.table == table }?.chains ?? []
                let stale = Self.ourChains(text.split(separator: "\n").map(String.init)).filter { !wanted.contains($0) }
                if stale.isEmpty { continue }
                input += "*\(table.rawValue)\n" + stale.map { "-X \($0)\n" }.joined() + "COMMIT\n"
            }
            if input.isEmpty { continue }
            let result = try CommandRunner.run(variant.command(ruleset.family, "restore"), ["--noflush", "--wait"], input: input)
            if result.status != 0 {
                throw CaptureError(
                    "the new rules are in place, but \(variant.command(ruleset.family, "restore")) could not delete unused chains of ours: \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
    }

    /// Checks that each of our chains holds the expected rules (by comment, in order) and that each hook
    /// rule is present exactly once.
    public func verify(_ rulesets: [IptablesRuleset]) throws(CaptureError) {
        for ruleset in rulesets {
            let live = try save(ruleset.family)
            for table in ruleset.tables {
                let lines = (live[table.table] ?? "").split(separator: "\n").map(String.init)
                for chain in table.chains {
                    let expected = table.rules.filter { $0.hasPrefix("-A \(chain) ") }.map(Self.comment)
                    let got = lines.filter { $0.hasPrefix("-A \(chain) ") }.map(Self.comment)
                    if got != expected {
                        throw CaptureError(
                            "verification failed: \(ruleset.family.command) -t \(table.table.rawValue) chain \(chain) holds \(got.count) rules, expected \(expected.count)")
                    }
                }
                for hook in table.hooks {
                    let n = lines.filter { Self.isHook($0, builtin: hook.builtinChain, ours: hook.ourChain) }.count
                    if n != 1 {
                        throw CaptureError(
                            "verification failed: \(ruleset.family.command) -t \(table.table.rawValue) has \(n) jumps from \(hook.builtinChain) to \(hook.ourChain), expected 1")
                    }
                }
            }
        }
    }

    /// Removes our chains and hook rules from every table and family. Returns how many chains went.
    @discardableResult
    public func remove() throws(CaptureError) -> Int {
        var removed = 0
        for family in [IptablesRuleset.Family.ipv4, .ipv6] where variant.mayHaveRules(family) {
            guard CommandRunner.locate(variant.command(family, "restore")) != nil else { continue }
            let before = try save(family)
            var input = ""
            for table in [NetfilterTable.mangle, .nat] {
                let lines = (before[table] ?? "").split(separator: "\n").map(String.init)
                let ours = Self.ourChains(lines)
                let hooks = lines.filter { Self.isAnyHook($0) }
                if ours.isEmpty && hooks.isEmpty { continue }
                input += "*\(table.rawValue)\n"
                for c in ours { input += ":\(c) - [0:0]\n" }
                for h in hooks { input += "-D" + h.dropFirst(2) + "\n" }
                for c in ours { input += "-X \(c)\n" }
                input += "COMMIT\n"
                removed += ours.count
            }
            if input.isEmpty { continue }
            let result = try CommandRunner.run(variant.command(family, "restore"), ["--noflush", "--wait"], input: input)
            if result.status != 0 {
                throw CaptureError(
                    "\(variant.command(family, "restore")) could not remove our chains: \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            if variant == .nft { try dropEmptyTables(family) }
        }
        return removed
    }

    /// iptables-nft creates its `nat` and `mangle` tables, and their built-in chains, on first use; a
    /// restore of a saved table re-creates all of its built-in chains. Once our chains are gone, built-in
    /// chains with no rules and an ACCEPT policy are removed again (and a table left with no chains), so
    /// `nft list ruleset` ends as it began. Such chains filter nothing, and iptables-nft re-creates them
    /// whenever they are next used, so no one else can tell the difference.
    func dropEmptyTables(_ family: IptablesRuleset.Family) throws(CaptureError) {
        let builtin: Set<String> = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        let nfproto = UInt8(family == .ipv4 ? 2 : 10)  // NFPROTO_IPV4, NFPROTO_IPV6
        for table in [NetfilterTable.mangle, .nat] {
            let nft = NftablesBackend(tableName: table.rawValue, family: nfproto)
            guard try nft.exists() else { continue }
            let chains = try nft.listChainDetails()
            let busy = Set(try nft.listRules().map(\.chain))
            let idle = chains.filter { builtin.contains($0.name) && !busy.contains($0.name) && $0.policy == 1 }  // NF_ACCEPT
            if idle.isEmpty { continue }
            try nft.delete(chains: idle.map(\.name), andTable: idle.count == chains.count)
        }
    }

    /// Whether any chain of ours exists in either family.
    public func isInstalled() throws(CaptureError) -> Bool {
        for family in [IptablesRuleset.Family.ipv4, .ipv6] where variant.mayHaveRules(family) {
            guard CommandRunner.locate(variant.command(family, "save")) != nil else { continue }
            for (_, text) in try save(family) where !Self.ourChains(text.split(separator: "\n").map(String.init)).isEmpty {
                return true
            }
        }
        return false
    }

    // MARK: - Restore input

    /// `--noflush` input for one family: per table, declare (and so flush) our new and stale chains, delete
    /// the old hook rules, add the new hooks and rules. Stale chains stay (empty) until `apply` has
    /// succeeded for every family.
    func restoreInput(installing ruleset: IptablesRuleset, over before: [NetfilterTable: String], injectFault: Bool) -> String {
        var out = ""
        let touched = Set(ruleset.tables.map(\.table)).union(
            before.filter { !Self.ourChains($0.value.split(separator: "\n").map(String.init)).isEmpty }.keys)
        let order = [NetfilterTable.mangle, .nat].filter { touched.contains($0) }
        for (i, tableName) in order.enumerated() {
            let lines = (before[tableName] ?? "").split(separator: "\n").map(String.init)
            let existing = Self.ourChains(lines)
            let wanted = ruleset.tables.first { $0.table == tableName }
            let wantedChains = wanted?.chains ?? []
            let stale = existing.filter { !wantedChains.contains($0) }
            out += "*\(tableName.rawValue)\n"
            for c in wantedChains + stale { out += ":\(c) - [0:0]\n" }
            for h in lines where Self.isAnyHook(h) { out += "-D" + h.dropFirst(2) + "\n" }
            if let wanted {
                for h in wanted.hooks { out += "-A \(h.builtinChain) \(h.spec)\n" }
                for r in wanted.rules { out += r + "\n" }
            }
            if injectFault && i == order.count - 1 {
                out += "-A \(IptablesRuleset.chainPrefix)FAULT_INJECTED -j RETURN\n"
            }
            out += "COMMIT\n"
        }
        return out
    }

    // MARK: - Save parsing

    func save(_ family: IptablesRuleset.Family) throws(CaptureError) -> [NetfilterTable: String] {
        var out: [NetfilterTable: String] = [:]
        for table in [NetfilterTable.mangle, .nat] {
            let r = try CommandRunner.run(variant.command(family, "save"), ["-t", table.rawValue])
            if r.status != 0 {
                throw CaptureError("\(variant.command(family, "save")) -t \(table.rawValue) failed: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            out[table] = r.stdout
        }
        return out
    }

    /// Puts our part of the tables back as it was before a failed apply: our chains with their saved
    /// rules (in their saved order), our saved hook rules, nothing else of ours. Other rules and chains
    /// are never rewritten, so even their order is kept. Falls back to restoring whole saved tables.
    func rollback(_ family: IptablesRuleset.Family, to state: [NetfilterTable: String]) {
        let restore = variant.command(family, "restore")
        if let now = try? save(family) {
            var input = ""
            for table in [NetfilterTable.mangle, .nat] {
                let before = (state[table] ?? "").split(separator: "\n").map(String.init)
                let after = (now[table] ?? "").split(separator: "\n").map(String.init)
                let previous = Self.ourChains(before), current = Self.ourChains(after)
                if previous.isEmpty && current.isEmpty && !after.contains(where: Self.isAnyHook) { continue }
                input += "*\(table.rawValue)\n"
                for c in previous + current.filter({ !previous.contains($0) }) { input += ":\(c) - [0:0]\n" }
                for h in after where Self.isAnyHook(h) { input += "-D" + h.dropFirst(2) + "\n" }
                for h in before where Self.isAnyHook(h) { input += h + "\n" }
                for r in before where r.hasPrefix("-A \(IptablesRuleset.chainPrefix)") { input += r + "\n" }
                for c in current where !previous.contains(c) { input += "-X \(c)\n" }
                input += "COMMIT\n"
            }
            if input.isEmpty || (try? CommandRunner.run(restore, ["--noflush", "--wait"], input: input))?.status == 0 {
                if variant == .nft { try? dropEmptyTables(family) }
                return
            }
        }
        var input = ""
        for table in [NetfilterTable.mangle, .nat] {
            let saved = state[table] ?? ""
            input += saved.contains("COMMIT") ? saved : "*\(table.rawValue)\nCOMMIT\n"
        }
        _ = try? CommandRunner.run(restore, ["--wait"], input: input)
        if variant == .nft { try? dropEmptyTables(family) }
    }

    static func ourChains(_ lines: [String]) -> [String] {
        lines.compactMap { line in
            guard line.hasPrefix(":\(IptablesRuleset.chainPrefix)") else { return nil }
            return line.dropFirst().split(separator: " ").first.map(String.init)
        }
    }

    static func isAnyHook(_ line: String) -> Bool {
        (line.hasPrefix("-A PREROUTING ") || line.hasPrefix("-A OUTPUT ")) && line.contains("-j \(IptablesRuleset.chainPrefix)")
    }

    static func isHook(_ line: String, builtin: String, ours: String) -> Bool {
        line.hasPrefix("-A \(builtin) ") && (line.hasSuffix("-j \(ours)") || line.contains("-j \(ours) "))
    }

    static func comment(_ line: String) -> String {
        guard let r = line.range(of: "--comment ") else { return "" }
        var rest = line[r.upperBound...]
        if rest.first == "\"" {
            rest = rest.dropFirst()
            return String(rest.prefix { $0 != "\"" })
        }
        return String(rest.prefix { $0 != " " })
    }
}
