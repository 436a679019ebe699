/// `sidecar-init`'s settings, resolved flag first, then environment variable (`PILOTFISH_<FLAG>`, for
/// Kubernetes manifests), then default. Table-driven so every flag has its variable and errors name both.
public struct CaptureSettings: Equatable, Sendable {
    public enum Backend: String, Sendable, CaseIterable { case nftables, iptables }

    public var policy: CapturePolicy
    public var backend: Backend
    public var iptablesVariant: IptablesVariant.Choice
    public var dryRun: Bool

    /// Every setting's flag name (without `--`); the environment variable is derived from it.
    public static let flagNames = [
        "mode", "backend", "inbound-port", "outbound-port", "proxy-uid", "proxy-gid", "include-inbound-ports",
        "exclude-inbound-ports", "exclude-outbound-ports", "include-outbound-cidrs", "exclude-outbound-cidrs",
        "exclude-interfaces", "proxy-ports", "tproxy-mark", "route-table", "ipv6", "capture-dns", "dns-port",
        "iptables-variant", "dry-run",
    ]

    public static func environmentName(_ flag: String) -> String {
        "PILOTFISH_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// `flags` holds what was given on the command line, keyed by flag name.
    public static func resolve(flags: [String: String], environment: [String: String]) throws(PolicyError) -> CaptureSettings {
        func value(_ flag: String) -> (String, String)? {
            if let v = flags[flag] { return (v, "--\(flag)") }
            let env = environmentName(flag)
            if let v = environment[env] { return (v, env) }
            return nil
        }
        func port(_ flag: String) throws(PolicyError) -> UInt16? {
            guard let (v, source) = value(flag) else { return nil }
            return try PortSelection.parsePort(v.trimmingWhitespace(), setting: source)
        }
        func uint32(_ flag: String) throws(PolicyError) -> UInt32? {
            guard let (v, source) = value(flag) else { return nil }
            let t = v.trimmingWhitespace()
            let parsed = t.lowercased().hasPrefix("0x") ? UInt32(t.dropFirst(2), radix: 16) : UInt32(t)
            guard let n = parsed else { throw PolicyError("\(source): '\(v)' is not a non-negative 32-bit number") }
            return n
        }
        func bool(_ flag: String) throws(PolicyError) -> Bool? {
            guard let (v, source) = value(flag) else { return nil }
            switch v.trimmingWhitespace().lowercased() {
            case "", "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw PolicyError("\(source): '\(v)' is not a boolean; use true or false")
            }
        }
        func list(_ flag: String) -> (String, String)? { value(flag) }

        var p = CapturePolicy()
        if let (v, source) = value("mode") {
            guard let m = CaptureMode(flag: v.trimmingWhitespace()) else {
                throw PolicyError("\(source): unknown capture mode '\(v)'; use tproxy or redirect")
            }
            p.mode = m
        }
        var backend = Backend.nftables
        if let (v, source) = value("backend") {
            guard let b = Backend(rawValue: v.trimmingWhitespace().lowercased()) else {
                throw PolicyError("\(source): unknown backend '\(v)'; use nftables or iptables")
            }
            backend = b
        }
        var variant = IptablesVariant.Choice.auto
        if let (v, source) = value("iptables-variant") {
            guard let c = IptablesVariant.Choice(rawValue: v.trimmingWhitespace().lowercased()) else {
                throw PolicyError("\(source): unknown iptables variant '\(v)'; use auto, nft or legacy")
            }
            if backend != .iptables {
                throw PolicyError("\(source) only applies to --backend iptables (the backend is \(backend.rawValue))")
            }
            variant = c
        }
        if let v = try port("inbound-port") { p.inboundPort = v }
        if let v = try port("outbound-port") { p.outboundPort = v }
        if let v = try uint32("proxy-uid") { p.proxyUID = v }
        if let v = try uint32("proxy-gid") { p.proxyGID = v }
        if let (v, source) = list("include-inbound-ports") {
            p.includeInboundPorts = try PortSelection(parsing: v, setting: source)
        }
        if let (v, source) = list("exclude-inbound-ports") {
            p.excludeInboundPorts = try PortSelection(parsing: v, setting: source, allowAll: false).ports
        }
        if let (v, source) = list("exclude-outbound-ports") {
            p.excludeOutboundPorts = try PortSelection(parsing: v, setting: source, allowAll: false).ports
        }
        if let (v, source) = list("proxy-ports") {
            p.proxyPorts = try PortSelection(parsing: v, setting: source, allowAll: false).ports
        }
        if let (v, source) = list("include-outbound-cidrs") {
            p.includeOutboundCIDRs = try parseCIDRs(v, setting: source, allowAll: true)
        }
        if let (v, source) = list("exclude-outbound-cidrs") {
            p.excludeOutboundCIDRs = try parseCIDRs(v, setting: source, allowAll: false) ?? []
        }
        if let (v, _) = list("exclude-interfaces") {
            p.excludeInterfaces = v.split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
        }
        if let v = try uint32("tproxy-mark") { p.tproxyMark = v }
        if let v = try uint32("route-table") { p.routeTable = v }
        if let v = try bool("ipv6") { p.ipv6 = v }
        let captureDNS = try bool("capture-dns") ?? false
        let dnsPort = try port("dns-port")
        if captureDNS {
            p.dnsCapturePort = dnsPort ?? 15053
        } else if dnsPort != nil {
            throw PolicyError("--dns-port is set but DNS capture is off; add --capture-dns")
        }
        let dryRun = try bool("dry-run") ?? false
        try p.validate()
        return CaptureSettings(policy: p, backend: backend, iptablesVariant: variant, dryRun: dryRun)
    }

    /// `*` (nil: every destination), or a list of CIDRs.
    static func parseCIDRs(_ text: String, setting: String, allowAll: Bool) throws(PolicyError) -> [CIDR]? {
        let t = text.trimmingWhitespace()
        if t == "*" {
            guard allowAll else { throw PolicyError("\(setting): '*' is not allowed here; list the CIDRs") }
            return nil
        }
        var out: [CIDR] = []
        for item in t.split(separator: ",") {
            let s = String(item).trimmingWhitespace()
            if s.isEmpty { continue }
            if s == "*" { throw PolicyError("\(setting): '*' cannot be combined with CIDRs in '\(text)'") }
            do {
                out.append(try CIDR(parsing: s))
            } catch {
                throw PolicyError("\(setting): \(error.message)")
            }
        }
        return out
    }
}
