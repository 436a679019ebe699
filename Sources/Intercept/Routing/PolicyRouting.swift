import CNetfilter
import Glibc

/// TPROXY's policy routing over rtnetlink: `ip rule add fwmark <mark> lookup <table>` and
/// `ip route add local 0.0.0.0/0 dev lo table <table>` (and the IPv6 pair). Adding checks first, so
/// re-running changes nothing; removing deletes only these entries.
public struct PolicyRouting: Equatable, Sendable {
    public var mark: UInt32
    public var table: UInt32
    public var ipv6: Bool

    public init(mark: UInt32, table: UInt32, ipv6: Bool) {
        self.mark = mark
        self.table = table
        self.ipv6 = ipv6
    }

    var families: [UInt8] { [UInt8(AF_INET)] + (ipv6 ? [UInt8(AF_INET6)] : []) }

    /// The equivalent `ip` commands, for dry-run output.
    public var commands: [String] {
        var out: [String] = []
        for f in families {
            let v = f == UInt8(AF_INET) ? "ip" : "ip -6"
            out.append("\(v) rule add fwmark \(IptablesRuleset.hex(mark)) lookup \(table)")
            out.append("\(v) route replace local \(f == UInt8(AF_INET) ? "0.0.0.0/0" : "::/0") dev lo table \(table)")
        }
        return out
    }

    /// What `apply` changed, so a later failure can undo exactly that.
    public struct Changes: Sendable {
        var addedRules: [UInt8] = []
        var addedRoutes: [UInt8] = []
        public var isEmpty: Bool { addedRules.isEmpty && addedRoutes.isEmpty }
    }

    @discardableResult
    public func apply() throws(CaptureError) -> Changes {
        let socket = try NetlinkSocket(bus: NETLINK_ROUTE)
        var changes = Changes()
        do {
            for f in families {
                if try countRules(socket, family: f) == 0 {
                    try request(socket, type: RTM_NEWRULE, flags: pf_nlm_f_create() | pf_nlm_f_excl(), rule: f)
                    changes.addedRules.append(f)
                }
                if try !hasLocalRoute(socket, family: f) {
                    try request(socket, type: RTM_NEWROUTE, flags: pf_nlm_f_create() | pf_nlm_f_replace(), route: f)
                    changes.addedRoutes.append(f)
                }
            }
        } catch {
            undo(changes)
            throw error
        }
        return changes
    }

    /// Reverts what one `apply` added (used when a later step fails).
    public func undo(_ changes: Changes) {
        guard let socket = try? NetlinkSocket(bus: NETLINK_ROUTE) else { return }
        for f in changes.addedRules { try? request(socket, type: RTM_DELRULE, flags: 0, rule: f) }
        for f in changes.addedRoutes { try? request(socket, type: RTM_DELROUTE, flags: 0, route: f) }
    }

    /// Deletes our rules and routes in both families (whether or not IPv6 is on now). Returns how many
    /// entries were removed.
    @discardableResult
    public func remove() throws(CaptureError) -> Int {
        let socket = try NetlinkSocket(bus: NETLINK_ROUTE)
        var removed = 0
        for f in [UInt8(AF_INET), UInt8(AF_INET6)] {
            var n = try countRules(socket, family: f)
            while n > 0 {
                try request(socket, type: RTM_DELRULE, flags: 0, rule: f)
                removed += 1
                n -= 1
            }
            if try hasLocalRoute(socket, family: f) {
                try request(socket, type: RTM_DELROUTE, flags: 0, route: f)
                removed += 1
            }
        }
        return removed
    }

    /// Whether the policy routing is in place (all families).
    public func isInstalled() throws(CaptureError) -> Bool {
        let socket = try NetlinkSocket(bus: NETLINK_ROUTE)
        for f in families {
            if try countRules(socket, family: f) == 0 { return false }
            if try !hasLocalRoute(socket, family: f) { return false }
        }
        return true
    }

    // MARK: - Messages

    private func withMessage(
        _ socket: NetlinkSocket, type: Int, flags: UInt32, seq: UInt32,
        _ fill: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) throws(CaptureError) {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let length = buffer.withUnsafeMutableBytes { raw -> Int in
            let h = mnl_nlmsg_put_header(raw.baseAddress)!
            h.pointee.nlmsg_type = UInt16(type)
            h.pointee.nlmsg_flags = UInt16(pf_nlm_f_request() | flags)
            h.pointee.nlmsg_seq = seq
            fill(h)
            return Int(h.pointee.nlmsg_len)
        }
        try socket.send(buffer, count: length)
    }

    private func request(_ socket: NetlinkSocket, type: Int, flags: UInt32, rule family: UInt8) throws(CaptureError) {
        let seq = socket.takeSeq()
        try withMessage(socket, type: type, flags: flags | pf_nlm_f_ack(), seq: seq) { h in
            let frh = mnl_nlmsg_put_extra_header(h, MemoryLayout<fib_rule_hdr>.size).assumingMemoryBound(to: fib_rule_hdr.self)
            frh.pointee.family = family
            frh.pointee.action = UInt8(FR_ACT_TO_TBL)
            frh.pointee.table = table < 256 ? UInt8(table) : UInt8(RT_TABLE_UNSPEC.rawValue)
            mnl_attr_put_u32(h, UInt16(FRA_FWMARK), mark)
            mnl_attr_put_u32(h, UInt16(FRA_TABLE), table)
        }
        let what = "\(type == RTM_NEWRULE ? "adding" : "deleting") ip rule fwmark \(IptablesRuleset.hex(mark)) lookup \(table) (\(family == UInt8(AF_INET) ? "IPv4" : "IPv6"))"
        do {
            try socket.receiveDump(seq: seq) { _ in }
        } catch {
            throw CaptureError("\(what) failed: \(String(cString: strerror(error.code ?? EIO)))\(CaptureError.hint(error.code ?? 0))", code: error.code)
        }
    }

    private func request(_ socket: NetlinkSocket, type: Int, flags: UInt32, route family: UInt8) throws(CaptureError) {
        let seq = socket.takeSeq()
        let lo = if_nametoindex("lo")
        try withMessage(socket, type: type, flags: flags | pf_nlm_f_ack(), seq: seq) { h in
            let rtm = mnl_nlmsg_put_extra_header(h, MemoryLayout<rtmsg>.size).assumingMemoryBound(to: rtmsg.self)
            rtm.pointee.rtm_family = family
            rtm.pointee.rtm_dst_len = 0
            rtm.pointee.rtm_table = table < 256 ? UInt8(table) : UInt8(RT_TABLE_UNSPEC.rawValue)
            rtm.pointee.rtm_protocol = UInt8(RTPROT_BOOT)
            rtm.pointee.rtm_scope = UInt8(RT_SCOPE_HOST.rawValue)
            rtm.pointee.rtm_type = UInt8(RTN_LOCAL)
            mnl_attr_put_u32(h, UInt16(RTA_TABLE.rawValue), table)
            mnl_attr_put_u32(h, UInt16(RTA_OIF.rawValue), lo)
        }
        let what = "\(type == RTM_NEWROUTE ? "adding" : "deleting") route local \(family == UInt8(AF_INET) ? "0.0.0.0/0" : "::/0") dev lo table \(table)"
        do {
            try socket.receiveDump(seq: seq) { _ in }
        } catch {
            throw CaptureError("\(what) failed: \(String(cString: strerror(error.code ?? EIO)))\(CaptureError.hint(error.code ?? 0))", code: error.code)
        }
    }

    /// How many `fwmark <mark> lookup <table>` rules exist for the family.
    private func countRules(_ socket: NetlinkSocket, family: UInt8) throws(CaptureError) -> Int {
        let seq = socket.takeSeq()
        try withMessage(socket, type: RTM_GETRULE, flags: pf_nlm_f_dump(), seq: seq) { h in
            let frh = mnl_nlmsg_put_extra_header(h, MemoryLayout<fib_rule_hdr>.size).assumingMemoryBound(to: fib_rule_hdr.self)
            frh.pointee.family = family
        }
        var count = 0
        try socket.receiveDump(seq: seq) { h in
            guard Int(h.pointee.nlmsg_type) == RTM_NEWRULE else { return }
            let frh = mnl_nlmsg_get_payload(h).assumingMemoryBound(to: fib_rule_hdr.self).pointee
            guard frh.family == family else { return }
            var attrs = RouteAttributes()
            attrs.parse(h, headerSize: MemoryLayout<fib_rule_hdr>.size)
            let ruleTable = attrs.table ?? UInt32(frh.table)
            if attrs.fwmark == mark && ruleTable == table { count += 1 }
        }
        return count
    }

    private func hasLocalRoute(_ socket: NetlinkSocket, family: UInt8) throws(CaptureError) -> Bool {
        let seq = socket.takeSeq()
        try withMessage(socket, type: RTM_GETROUTE, flags: pf_nlm_f_dump(), seq: seq) { h in
            let rtm = mnl_nlmsg_put_extra_header(h, MemoryLayout<rtmsg>.size).assumingMemoryBound(to: rtmsg.self)
            rtm.pointee.rtm_family = family
        }
        var found = false
        let lo = if_nametoindex("lo")
        try socket.receiveDump(seq: seq) { h in
            guard Int(h.pointee.nlmsg_type) == RTM_NEWROUTE else { return }
            let rtm = mnl_nlmsg_get_payload(h).assumingMemoryBound(to: rtmsg.self).pointee
            guard rtm.rtm_family == family, rtm.rtm_type == UInt8(RTN_LOCAL), rtm.rtm_dst_len == 0 else { return }
            var attrs = RouteAttributes()
            attrs.parse(h, headerSize: MemoryLayout<rtmsg>.size)
            if (attrs.table ?? UInt32(rtm.rtm_table)) == table && attrs.oif == lo { found = true }
        }
        return found
    }
}

/// The few u32 attributes we read from rule and route messages.
struct RouteAttributes {
    var fwmark: UInt32?
    var table: UInt32?
    var oif: UInt32?

    mutating func parse(_ h: UnsafePointer<nlmsghdr>, headerSize: Int) {
        var attr = mnl_nlmsg_get_payload_offset(h, headerSize)!.assumingMemoryBound(to: nlattr.self)
        let end = UnsafeRawPointer(mnl_nlmsg_get_payload_tail(h)!)
        var remaining = Int32(UnsafeRawPointer(attr).distance(to: end))
        let isRule = Int(h.pointee.nlmsg_type) == RTM_NEWRULE
        while mnl_attr_ok(attr, remaining) {
            let type = Int32(mnl_attr_get_type(attr))
            let isU32 = mnl_attr_get_payload_len(attr) == 4
            if isU32 {
                let v = mnl_attr_get_u32(attr)
                if isRule {
                    if type == Int32(FRA_FWMARK) { fwmark = v }
                    if type == Int32(FRA_TABLE) { table = v }
                } else {
                    if type == Int32(RTA_TABLE.rawValue) { table = v }
                    if type == Int32(RTA_OIF.rawValue) { oif = v }
                }
            }
            attr = mnl_attr_next(attr)!
            remaining = Int32(UnsafeRawPointer(attr).distance(to: end))
        }
    }
}
