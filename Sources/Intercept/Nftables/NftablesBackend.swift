import CNetfilter
import Glibc

/// Installs, verifies and removes our `inet pilotfish` table over netlink. Touches nothing else.
public struct NftablesBackend {
    public let tableName: String
    /// NFPROTO_* of the table: ours is `inet`; iptables-nft's tables are `ip` and `ip6`.
    public let family: UInt8

    public init(tableName: String = NftablesRenderer.tableName, family: UInt8 = UInt8(NFPROTO_INET)) {
        self.tableName = tableName
        self.family = family
    }

    /// Replaces any previous version of our table in one atomic transaction: add (so delete cannot fail),
    /// delete, then create the table, its chains and rules. Re-running is idempotent by construction.
    /// `injectFault` appends a rule jumping to a missing chain halfway through, to prove a refused batch
    /// leaves the previous state untouched.
    public func apply(_ ruleset: CaptureRuleset, injectFault: Bool = false) throws(CaptureError) {
        let socket = try NetlinkSocket(bus: NETLINK_NETFILTER)
        let tx = NftablesTransaction(socket: socket)
        tx.addTable(tableName)
        tx.deleteTable(tableName)
        tx.addTable(tableName)
        for chain in ruleset.chains { tx.addChain(chain, table: tableName) }
        let faultAfter = ruleset.ruleCount / 2
        var added = 0
        for chain in ruleset.chains {
            for (i, rule) in chain.rules.enumerated() {
                if injectFault && added == faultAfter {
                    let bogus = CaptureRule([], .jump("fault_injected_missing_chain"), "pilotfish: injected fault")
                    tx.addRule(bogus, chain: chain.name, table: tableName, index: i)
                }
                tx.addRule(rule, chain: chain.name, table: tableName, index: i)
                added += 1
            }
        }
        try tx.commit()
    }

    /// Reads our table back from the kernel and checks that every chain holds exactly the expected rules,
    /// identified by their comments, in order.
    public func verify(_ ruleset: CaptureRuleset) throws(CaptureError) {
        let live = try listRules()
        var expected: [String: [String]] = [:]
        for chain in ruleset.chains { expected[chain.name] = chain.rules.map(\.comment) }
        let liveChains = try listChains()
        for chain in ruleset.chains where !liveChains.contains(chain.name) {
            throw CaptureError("verification failed: chain \(chain.name) is missing from table inet \(tableName)")
        }
        for name in liveChains where expected[name] == nil {
            throw CaptureError("verification failed: table inet \(tableName) has an unexpected chain \(name)")
        }
        for chain in ruleset.chains {
            let got = live.filter { $0.chain == chain.name }.map(\.comment)
            if got != expected[chain.name]! {
                throw CaptureError(
                    "verification failed: chain \(chain.name) holds \(got.count) rules, expected \(chain.rules.count): \(got)")
            }
        }
    }

    /// Whether our table exists.
    public func exists() throws(CaptureError) -> Bool {
        do {
            _ = try listChains()
            return true
        } catch let e where e.code == ENOENT {
            return false
        }
    }

    /// Deletes our table (and with it every chain and rule of ours). Returns whether there was one.
    @discardableResult
    public func remove() throws(CaptureError) -> Bool {
        guard try exists() else { return false }
        let socket = try NetlinkSocket(bus: NETLINK_NETFILTER)
        let tx = NftablesTransaction(socket: socket, family: family)
        tx.deleteTable(tableName)
        try tx.commit()
        return true
    }

    public struct LiveRule: Equatable {
        public var chain: String
        public var comment: String
    }

    public func listRules() throws(CaptureError) -> [LiveRule] {
        let socket = try NetlinkSocket(bus: NETLINK_NETFILTER)
        let filter = nftnl_rule_alloc()!
        defer { nftnl_rule_free(filter) }
        nftnl_rule_set_str(filter, UInt16(NFTNL_RULE_TABLE.rawValue), tableName)
        nftnl_rule_set_u32(filter, UInt16(NFTNL_RULE_FAMILY.rawValue), UInt32(family))
        var out: [LiveRule] = []
        try ask(socket, NFT_MSG_GETRULE, flags: pf_nlm_f_dump(), payload: { nftnl_rule_nlmsg_build_payload($0, filter) }) { h in
            let r = nftnl_rule_alloc()!
            defer { nftnl_rule_free(r) }
            guard nftnl_rule_nlmsg_parse(h, r) >= 0 else { return }
            guard let table = nftnl_rule_get_str(r, UInt16(NFTNL_RULE_TABLE.rawValue)), String(cString: table) == tableName,
                let chain = nftnl_rule_get_str(r, UInt16(NFTNL_RULE_CHAIN.rawValue))
            else { return }
            let comment = pf_nftnl_rule_get_comment(r).map { String(cString: $0) } ?? ""
            out.append(LiveRule(chain: String(cString: chain), comment: comment))
        }
        return out
    }

    /// Sends one nf_tables request and hands every reply of it to `each`, up to the final ack or DONE.
    private func ask(
        _ socket: NetlinkSocket, _ type: nf_tables_msg_types, flags: UInt32,
        payload: (UnsafeMutablePointer<nlmsghdr>) -> Void, each: (UnsafePointer<nlmsghdr>) -> Void = { _ in }
    ) throws(CaptureError) {
        let seq = socket.takeSeq()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let length = buffer.withUnsafeMutableBytes { raw -> Int in
            let h = nftnl_nlmsg_build_hdr(
                raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt16(type.rawValue), UInt16(family), UInt16(flags), seq)!
            payload(h)
            return Int(h.pointee.nlmsg_len)
        }
        try socket.send(buffer, count: length)
        try socket.receiveDump(seq: seq) { h in each(h) }
    }

    /// Names of the chains in our table; throws an ENOENT error when the table does not exist.
    public func listChains() throws(CaptureError) -> [String] {
        try listChainDetails().map(\.name)
    }

    public struct LiveChain: Equatable {
        public var name: String
        /// The base chain's policy (NF_ACCEPT, NF_DROP), nil for regular chains.
        public var policy: UInt32?
    }

    /// Deletes the named chains in one transaction, and the table too when `andTable`.
    public func delete(chains: [String], andTable: Bool) throws(CaptureError) {
        let socket = try NetlinkSocket(bus: NETLINK_NETFILTER)
        let tx = NftablesTransaction(socket: socket, family: family)
        if andTable {
            tx.deleteTable(tableName)
        } else {
            for c in chains { tx.deleteChain(c, table: tableName) }
        }
        try tx.commit()
    }

    public func listChainDetails() throws(CaptureError) -> [LiveChain] {
        let socket = try NetlinkSocket(bus: NETLINK_NETFILTER)
        // A chain dump filtered by a missing table is just empty; GETTABLE reports the table missing.
        let t = nftnl_table_alloc()!
        defer { nftnl_table_free(t) }
        nftnl_table_set_str(t, UInt16(NFTNL_TABLE_NAME.rawValue), tableName)
        try ask(socket, NFT_MSG_GETTABLE, flags: pf_nlm_f_ack(), payload: { nftnl_table_nlmsg_build_payload($0, t) })

        let filter = nftnl_chain_alloc()!
        defer { nftnl_chain_free(filter) }
        nftnl_chain_set_str(filter, UInt16(NFTNL_CHAIN_TABLE.rawValue), tableName)
        nftnl_chain_set_u32(filter, UInt16(NFTNL_CHAIN_FAMILY.rawValue), UInt32(family))
        var out: [LiveChain] = []
        try ask(socket, NFT_MSG_GETCHAIN, flags: pf_nlm_f_dump(), payload: { nftnl_chain_nlmsg_build_payload($0, filter) }) { h in
            let c = nftnl_chain_alloc()!
            defer { nftnl_chain_free(c) }
            guard nftnl_chain_nlmsg_parse(h, c) >= 0 else { return }
            guard let table = nftnl_chain_get_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue)), String(cString: table) == tableName,
                let name = nftnl_chain_get_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue))
            else { return }
            let policy =
                nftnl_chain_is_set(c, UInt16(NFTNL_CHAIN_POLICY.rawValue))
                ? nftnl_chain_get_u32(c, UInt16(NFTNL_CHAIN_POLICY.rawValue)) : nil
            out.append(LiveChain(name: String(cString: name), policy: policy))
        }
        return out
    }
}
