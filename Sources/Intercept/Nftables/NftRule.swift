import CNetfilter
import Glibc

/// One libnftnl rule under construction. It owns its `nftnl_rule` (and, through it, every expression added).
final class NftRule {
    let handle: OpaquePointer
    private static let reg1 = UInt32(NFT_REG_1.rawValue)
    private static let verdictReg = UInt32(NFT_REG_VERDICT.rawValue)

    init(table: String, chain: String) {
        handle = nftnl_rule_alloc()
        nftnl_rule_set_u32(handle, UInt16(NFTNL_RULE_FAMILY.rawValue), UInt32(NFPROTO_INET))
        nftnl_rule_set_str(handle, UInt16(NFTNL_RULE_TABLE.rawValue), table)
        nftnl_rule_set_str(handle, UInt16(NFTNL_RULE_CHAIN.rawValue), chain)
    }

    deinit { nftnl_rule_free(handle) }

    /// Encodes one capture rule: the matches, a counter, the action, the comment.
    convenience init(_ rule: CaptureRule, table: String, chain: String) {
        self.init(table: table, chain: chain)
        for m in rule.matches { add(m) }
        append("counter") { _ in }
        add(rule.action)
        _ = pf_nftnl_rule_set_comment(handle, rule.comment)
    }

    /// Allocates an expression, lets `configure` set it up and hands it to the rule (which frees it).
    private func append(_ name: String, _ configure: (OpaquePointer) -> Void) {
        let e = nftnl_expr_alloc(name)!
        configure(e)
        nftnl_rule_add_expr(handle, e)
    }

    private func metaLoad(_ key: nft_meta_keys) {
        append("meta") { e in
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_META_KEY), key.rawValue)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_META_DREG), Self.reg1)
        }
    }

    private func metaSet(_ key: nft_meta_keys) {
        append("meta") { e in
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_META_KEY), key.rawValue)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_META_SREG), Self.reg1)
        }
    }

    private func ctLoad(_ key: nft_ct_keys) {
        append("ct") { e in
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_CT_KEY), key.rawValue)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_CT_DREG), Self.reg1)
        }
    }

    private func cmp(_ bytes: [UInt8], negated: Bool = false) {
        append("cmp") { e in
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_CMP_SREG), Self.reg1)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_CMP_OP), (negated ? NFT_CMP_NEQ : NFT_CMP_EQ).rawValue)
            bytes.withUnsafeBytes { _ = nftnl_expr_set(e, UInt16(NFTNL_EXPR_CMP_DATA), $0.baseAddress, UInt32($0.count)) }
        }
    }

    private func payloadLoad(_ base: nft_payload_bases, offset: UInt32, length: UInt32) {
        append("payload") { e in
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_PAYLOAD_BASE), base.rawValue)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_PAYLOAD_OFFSET), offset)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_PAYLOAD_LEN), length)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_PAYLOAD_DREG), Self.reg1)
        }
    }

    private func immediate(_ bytes: [UInt8]) {
        append("immediate") { e in
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_IMM_DREG), Self.reg1)
            bytes.withUnsafeBytes { _ = nftnl_expr_set(e, UInt16(NFTNL_EXPR_IMM_DATA), $0.baseAddress, UInt32($0.count)) }
        }
    }

    private func verdict(_ code: Int32, chain: String? = nil) {
        append("immediate") { e in
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_IMM_DREG), Self.verdictReg)
            nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_IMM_VERDICT), UInt32(bitPattern: code))
            if let chain { nftnl_expr_set_str(e, UInt16(NFTNL_EXPR_IMM_CHAIN), chain) }
        }
    }

    private static func hostOrder(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    private static func bigEndian(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    private static func interfaceName(_ name: String) -> [UInt8] {
        let bytes = Array(name.utf8.prefix(Int(IFNAMSIZ) - 1))
        return bytes + Array(repeating: 0, count: Int(IFNAMSIZ) - bytes.count)
    }

    private func add(_ match: CaptureMatch) {
        switch match {
        case .family(let f):
            metaLoad(NFT_META_NFPROTO)
            cmp([UInt8(f == .ipv4 ? NFPROTO_IPV4 : NFPROTO_IPV6)])
        case .transport(let p):
            metaLoad(NFT_META_L4PROTO)
            cmp([p.number])
        case .destinationPort(let p, let port):
            metaLoad(NFT_META_L4PROTO)
            cmp([p.number])
            payloadLoad(NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, length: 2)
            cmp(Self.bigEndian(port))
        case .inputInterface(let name):
            metaLoad(NFT_META_IIFNAME)
            cmp(Self.interfaceName(name))
        case .outputInterface(let name):
            metaLoad(NFT_META_OIFNAME)
            cmp(Self.interfaceName(name))
        case .sourceAddress(let c, let negated):
            address(c, source: true, negated: negated)
        case .destinationAddress(let c, let negated):
            address(c, source: false, negated: negated)
        case .socketUID(let uid, let negated):
            metaLoad(NFT_META_SKUID)
            cmp(Self.hostOrder(uid), negated: negated)
        case .socketGID(let gid, let negated):
            metaLoad(NFT_META_SKGID)
            cmp(Self.hostOrder(gid), negated: negated)
        case .mark(let m):
            metaLoad(NFT_META_MARK)
            cmp(Self.hostOrder(m))
        case .connectionMark(let m):
            ctLoad(NFT_CT_MARK)
            cmp(Self.hostOrder(m))
        case .transparentSocket:
            append("socket") { e in
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_SOCKET_KEY), NFT_SOCKET_TRANSPARENT.rawValue)
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_SOCKET_DREG), Self.reg1)
            }
            cmp([1])
        case .replyDirection:
            ctLoad(NFT_CT_DIRECTION)
            cmp([UInt8(IP_CT_DIR_REPLY.rawValue)])
        }
    }

    /// `ip[6] saddr|daddr [!=] prefix`, encoded as nft(8) encodes it, so `nft list` prints it back unchanged.
    private func address(_ c: CIDR, source: Bool, negated: Bool) {
        let v4 = c.family == .ipv4
        metaLoad(NFT_META_NFPROTO)
        cmp([UInt8(v4 ? NFPROTO_IPV4 : NFPROTO_IPV6)])
        guard c.prefixLength > 0 else { return }
        let offset: UInt32 = v4 ? (source ? 12 : 16) : (source ? 8 : 24)
        // Byte-aligned prefixes compare just their bytes; others load the whole address and mask it.
        let length = c.prefixLength % 8 == 0 ? c.prefixLength / 8 : c.address.count
        payloadLoad(NFT_PAYLOAD_NETWORK_HEADER, offset: offset, length: UInt32(length))
        if c.prefixLength % 8 != 0 {
            let mask = Array(c.maskBytes.prefix(length))
            append("bitwise") { e in
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_BITWISE_SREG), Self.reg1)
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_BITWISE_DREG), Self.reg1)
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_BITWISE_LEN), UInt32(length))
                mask.withUnsafeBytes { _ = nftnl_expr_set(e, UInt16(NFTNL_EXPR_BITWISE_MASK), $0.baseAddress, UInt32($0.count)) }
                let zero = [UInt8](repeating: 0, count: length)
                zero.withUnsafeBytes { _ = nftnl_expr_set(e, UInt16(NFTNL_EXPR_BITWISE_XOR), $0.baseAddress, UInt32($0.count)) }
            }
        }
        cmp(Array(c.address.prefix(length)), negated: negated)
    }

    private func add(_ action: CaptureAction) {
        switch action {
        case .jump(let chain): verdict(NFT_JUMP.rawValue, chain: chain)
        case .return: verdict(NFT_RETURN.rawValue)
        case .redirect(let port):
            immediate(Self.bigEndian(port))
            append("redir") { e in
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_REDIR_REG_PROTO_MIN), Self.reg1)
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_REDIR_REG_PROTO_MAX), Self.reg1)
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_REDIR_FLAGS), UInt32(NF_NAT_RANGE_PROTO_SPECIFIED))
            }
        case .tproxy(let port, let mark):
            immediate(Self.bigEndian(port))
            append("tproxy") { e in
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_TPROXY_FAMILY), UInt32(NFPROTO_UNSPEC))
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_TPROXY_REG_PORT), Self.reg1)
            }
            immediate(Self.hostOrder(mark))
            metaSet(NFT_META_MARK)
            verdict(Int32(NF_ACCEPT))
        case .divert(let mark):
            immediate(Self.hostOrder(mark))
            metaSet(NFT_META_MARK)
            verdict(Int32(NF_ACCEPT))
        case .refuse:
            append("reject") { e in
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_REJECT_TYPE), NFT_REJECT_TCP_RST.rawValue)
                nftnl_expr_set_u8(e, UInt16(NFTNL_EXPR_REJECT_CODE), 0)
            }
        case .saveMark:
            metaLoad(NFT_META_MARK)
            append("ct") { e in
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_CT_KEY), NFT_CT_MARK.rawValue)
                nftnl_expr_set_u32(e, UInt16(NFTNL_EXPR_CT_SREG), Self.reg1)
            }
        case .restoreMark:
            ctLoad(NFT_CT_MARK)
            metaSet(NFT_META_MARK)
        }
    }
}
