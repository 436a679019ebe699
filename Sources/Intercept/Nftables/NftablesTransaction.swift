import CNetfilter
import Glibc

/// One nfnetlink batch: every message between BEGIN and END is committed by the kernel atomically, or not
/// at all. Each message asks for an acknowledgement so a failure can be traced to the message that caused it.
final class NftablesTransaction {
    private var buffer: UnsafeMutableRawBufferPointer
    private let batch: OpaquePointer
    private let socket: NetlinkSocket
    private var seqDescriptions: [UInt32: String] = [:]
    private var overflowed = false
    private let family: UInt8

    static let bufferSize = 4 << 20

    init(socket: NetlinkSocket, family: UInt8 = UInt8(NFPROTO_INET)) {
        self.socket = socket
        self.family = family
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 8)
        batch = mnl_nlmsg_batch_start(buffer.baseAddress, Self.bufferSize)
        nftnl_batch_begin(mnl_nlmsg_batch_current(batch).assumingMemoryBound(to: CChar.self), socket.takeSeq())
        next()
    }

    deinit {
        mnl_nlmsg_batch_stop(batch)
        buffer.deallocate()
    }

    private func next() {
        if !mnl_nlmsg_batch_next(batch) { overflowed = true }
    }

    private func header(_ type: nf_tables_msg_types, flags: UInt32, describe: String) -> UnsafeMutablePointer<nlmsghdr> {
        let seq = socket.takeSeq()
        seqDescriptions[seq] = describe
        return nftnl_nlmsg_build_hdr(
            mnl_nlmsg_batch_current(batch).assumingMemoryBound(to: CChar.self), UInt16(type.rawValue),
            UInt16(family), UInt16(flags | pf_nlm_f_ack()), seq)
    }

    func addTable(_ name: String) {
        table(name, NFT_MSG_NEWTABLE, flags: pf_nlm_f_create(), describe: "add table \(name)")
    }

    func deleteTable(_ name: String) {
        table(name, NFT_MSG_DELTABLE, flags: 0, describe: "delete table \(name)")
    }

    private func table(_ name: String, _ type: nf_tables_msg_types, flags: UInt32, describe: String) {
        let t = nftnl_table_alloc()!
        defer { nftnl_table_free(t) }
        nftnl_table_set_str(t, UInt16(NFTNL_TABLE_NAME.rawValue), name)
        nftnl_table_set_u32(t, UInt16(NFTNL_TABLE_FAMILY.rawValue), UInt32(family))
        let h = header(type, flags: flags, describe: describe)
        nftnl_table_nlmsg_build_payload(h, t)
        next()
    }

    func deleteChain(_ name: String, table: String) {
        let c = nftnl_chain_alloc()!
        defer { nftnl_chain_free(c) }
        nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue), table)
        nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue), name)
        nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_FAMILY.rawValue), UInt32(family))
        let h = header(NFT_MSG_DELCHAIN, flags: 0, describe: "delete chain \(table) \(name)")
        nftnl_chain_nlmsg_build_payload(h, c)
        next()
    }

    func addChain(_ chain: CaptureChain, table: String) {
        let c = nftnl_chain_alloc()!
        defer { nftnl_chain_free(c) }
        nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TABLE.rawValue), table)
        nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_NAME.rawValue), chain.name)
        nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_FAMILY.rawValue), UInt32(family))
        if let hook = chain.hook {
            let (hooknum, priority, type): (Int32, Int32, String)
            switch hook {
            case .natPrerouting: (hooknum, priority, type) = (Int32(NF_INET_PRE_ROUTING.rawValue), -100, "nat")
            case .manglePrerouting: (hooknum, priority, type) = (Int32(NF_INET_PRE_ROUTING.rawValue), -150, "filter")
            case .natOutput: (hooknum, priority, type) = (Int32(NF_INET_LOCAL_OUT.rawValue), -100, "nat")
            case .mangleOutput: (hooknum, priority, type) = (Int32(NF_INET_LOCAL_OUT.rawValue), -150, "route")
            }
            nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_HOOKNUM.rawValue), UInt32(hooknum))
            nftnl_chain_set_s32(c, UInt16(NFTNL_CHAIN_PRIO.rawValue), priority)
            nftnl_chain_set_str(c, UInt16(NFTNL_CHAIN_TYPE.rawValue), type)
            nftnl_chain_set_u32(c, UInt16(NFTNL_CHAIN_POLICY.rawValue), UInt32(NF_ACCEPT))
        }
        let h = header(NFT_MSG_NEWCHAIN, flags: pf_nlm_f_create(), describe: "add chain \(chain.name)")
        nftnl_chain_nlmsg_build_payload(h, c)
        next()
    }

    func addRule(_ rule: CaptureRule, chain: String, table: String, index: Int) {
        let r = NftRule(rule, table: table, chain: chain)
        let h = header(
            NFT_MSG_NEWRULE, flags: pf_nlm_f_create() | UInt32(NLM_F_APPEND),
            describe: "rule \(index + 1) of chain \(chain) (\(rule.nftText))")
        nftnl_rule_nlmsg_build_payload(h, r.handle)
        next()
    }

    /// Sends the batch and waits for the kernel's verdict on every message.
    func commit() throws(CaptureError) {
        nftnl_batch_end(mnl_nlmsg_batch_current(batch).assumingMemoryBound(to: CChar.self), socket.takeSeq())
        next()
        if overflowed {
            throw CaptureError("the ruleset does not fit in one \(Self.bufferSize >> 20) MiB netlink batch; use fewer ports or CIDRs")
        }
        let head = UnsafeRawBufferPointer(start: mnl_nlmsg_batch_head(batch), count: mnl_nlmsg_batch_size(batch))
        try socket.send(head)
        var failure: (code: Int32, what: String)?
        try socket.drainReplies { h in
            if let code = NetlinkSocket.errorCode(h), code != 0, failure == nil {
                failure = (code, seqDescriptions[h.pointee.nlmsg_seq] ?? "the batch")
            }
        }
        if let failure {
            throw CaptureError(
                "the kernel refused \(failure.what): \(String(cString: strerror(failure.code)))\(Self.hint(failure.code, failure.what)); nothing was changed", code: failure.code)
        }
    }

    static func hint(_ code: Int32, _ what: String) -> String {
        if code == EPERM || code == EACCES { return CaptureError.hint(code) }
        if (code == ENOENT || code == EOPNOTSUPP) && (what.contains("tproxy") || what.contains("socket transparent")) {
            return "; this kernel has no nftables tproxy/socket support (modules nft_tproxy, nft_socket); load them or use --mode redirect"
        }
        if (code == ENOENT || code == EOPNOTSUPP) && what.contains("redirect") {
            return "; this kernel has no nftables NAT redirect support (modules nft_redir, nft_chain_nat)"
        }
        return ""
    }
}
