import ArgumentParser
import Foundation
import Intercept
import MeshCapture

/// Options shared by every subcommand. Unset options fall back to `PILOTFISH_<FLAG>` environment
/// variables, then to the defaults shown.
struct CaptureOptions: ParsableArguments {
    @Option(name: [.customLong("mode"), .customShort("m")], help: "Capture mode: tproxy or redirect (default tproxy).")
    var mode: String?
    @Option(help: "Rule backend: nftables (over netlink) or iptables (default nftables).")
    var backend: String?
    @Option(name: [.customLong("inbound-port"), .customShort("z")], help: "Inbound capture port (default \(CaptureDefaults.inboundPort)).")
    var inboundPort: String?
    @Option(name: [.customLong("outbound-port"), .customShort("p")], help: "Outbound capture port (default \(CaptureDefaults.outboundPort)).")
    var outboundPort: String?
    @Option(name: [.customLong("proxy-uid"), .customShort("u")], help: "UID of the sidecar, never captured (default \(CaptureDefaults.proxyUID)).")
    var proxyUID: String?
    @Option(name: [.customLong("proxy-gid"), .customShort("g")], help: "GID of the sidecar, never captured (default \(CaptureDefaults.proxyGID)).")
    var proxyGID: String?
    @Option(
        name: [.customLong("include-inbound-ports"), .customShort("b")],
        help: "Inbound ports to capture: '*' or P,P,... (default '*').")
    var includeInboundPorts: String?
    @Option(name: [.customLong("exclude-inbound-ports"), .customShort("d")], help: "Inbound ports never captured.")
    var excludeInboundPorts: String?
    @Option(name: [.customLong("exclude-outbound-ports"), .customShort("o")], help: "Outbound ports never captured.")
    var excludeOutboundPorts: String?
    @Option(
        name: [.customLong("include-outbound-cidrs"), .customShort("i")],
        help: "Outbound destinations to capture: '*' or CIDR,... (IPv4 and IPv6; default '*').")
    var includeOutboundCIDRs: String?
    @Option(name: [.customLong("exclude-outbound-cidrs"), .customShort("x")], help: "Outbound destinations never captured.")
    var excludeOutboundCIDRs: String?
    @Option(name: .customLong("exclude-interfaces"), help: "Interfaces whose traffic is never captured.")
    var excludeInterfaces: String?
    @Option(name: .customLong("proxy-ports"), help: "The sidecar's own ports, never captured inbound (default \(CaptureDefaults.proxyPorts.map(String.init).joined(separator: ","))).")
    var proxyPorts: String?
    @Option(name: .customLong("tproxy-mark"), help: "Packet mark for TPROXY (default \(CaptureDefaults.tproxyMark)).")
    var tproxyMark: String?
    @Option(name: .customLong("route-table"), help: "Route table for TPROXY policy routing (default \(CaptureDefaults.routeTable)).")
    var routeTable: String?
    @Option(name: .customLong("ipv6"), help: "Capture IPv6 too: true or false (default true).")
    var ipv6: String?
    @Flag(name: .customLong("capture-dns"), help: "Redirect the app's DNS (port 53) to --dns-port.")
    var captureDNS = false
    @Option(name: .customLong("dns-port"), help: "Port DNS is captured to (default 15053).")
    var dnsPort: String?
    @Option(name: .customLong("iptables-variant"), help: "iptables variant: auto, nft or legacy (default auto).")
    var iptablesVariant: String?

    func settings(dryRun: Bool) throws -> CaptureSettings {
        var flags: [String: String] = [:]
        let given: [(String, String?)] = [
            ("mode", mode), ("backend", backend), ("inbound-port", inboundPort), ("outbound-port", outboundPort),
            ("proxy-uid", proxyUID), ("proxy-gid", proxyGID), ("include-inbound-ports", includeInboundPorts),
            ("exclude-inbound-ports", excludeInboundPorts), ("exclude-outbound-ports", excludeOutboundPorts),
            ("include-outbound-cidrs", includeOutboundCIDRs), ("exclude-outbound-cidrs", excludeOutboundCIDRs),
            ("exclude-interfaces", excludeInterfaces), ("proxy-ports", proxyPorts), ("tproxy-mark", tproxyMark),
            ("route-table", routeTable), ("ipv6", ipv6), ("capture-dns", captureDNS ? "true" : nil),
            ("dns-port", dnsPort), ("iptables-variant", iptablesVariant), ("dry-run", dryRun ? "true" : nil),
        ]
        for case (let k, let v?) in given { flags[k] = v }
        do {
            return try CaptureSettings.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError(error.message)
        }
    }
}

@main
struct SidecarInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar-init",
        abstract: "Installs the traffic-capture rules of a Pilotfish pod (nftables over netlink, or iptables).",
        discussion: """
            Every option can also be given as an environment variable PILOTFISH_<OPTION> (for example \
            PILOTFISH_MODE=redirect, PILOTFISH_EXCLUDE_INBOUND_PORTS=15020); a flag wins over the variable. \
            Exit status: 0 done, 1 the system refused (message says why; nothing half-applied), 64 bad input.
            """,
        subcommands: [Apply.self, Cleanup.self, Validate.self],
        defaultSubcommand: Apply.self)
}

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Install or replace the capture rules (the default).")
    @OptionGroup var options: CaptureOptions
    @Flag(name: .customLong("dry-run"), help: "Print the exact rules for the chosen backend and change nothing.")
    var dryRun = false

    func run() throws {
        let settings = try options.settings(dryRun: dryRun)
        try runInit { () throws(CaptureError) in
            let installer = CaptureInstaller(settings: settings)
            if settings.dryRun {
                print(installer.dryRunText(), terminator: "")
                return
            }
            let summary = try installer.apply(injectFault: ProcessInfo.processInfo.environment["PILOTFISH_INIT_FAULT"] == "mid-batch")
            log(summary)
        }
    }
}

struct Cleanup: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove exactly what apply installed: table or chains, ip rules, routes.")
    @OptionGroup var options: CaptureOptions

    func run() throws {
        let settings = try options.settings(dryRun: false)
        try runInit { () throws(CaptureError) in
            log(try CaptureInstaller(settings: settings).cleanup())
        }
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prove capture works: a connection as the proxy UID to a probe address must land on the inbound port with its original destination.")
    @OptionGroup var options: CaptureOptions
    @Option(name: .customLong("probe-address"), help: "Probe destination; nothing may listen there.")
    var probeAddress: String = "127.0.0.6:15002"
    @Option(
        name: .customLong("outbound-probe"),
        help: "Also check outbound capture: connect as this process (not the proxy UID) to ADDR:PORT, routed off the pod.")
    var outboundProbe: String?
    @Option(name: .customLong("timeout-ms"), help: "How long to wait for each captured connection.")
    var timeoutMs: Int32 = 3000

    func run() throws {
        let settings = try options.settings(dryRun: false)
        let inbound = try parseHostPort(probeAddress, flag: "--probe-address")
        let outbound = try outboundProbe.map { try parseHostPort($0, flag: "--outbound-probe") }
        try runInit { () throws(CaptureError) in
            let check = CaptureSelfCheck(timeoutMilliseconds: timeoutMs)
            let p = settings.policy
            let got = try check.run(
                .init(
                    capturePort: p.inboundPort, target: inbound, uid: p.proxyUID, gid: p.proxyGID,
                    what: "a connection from uid \(p.proxyUID) to \(probeAddress)"))
            log("validate: proxy uid \(p.proxyUID) -> \(probeAddress) captured to :\(p.inboundPort), original destination \(got) (\(got.source.rawValue))")
            if let outbound, let text = outboundProbe {
                let got = try check.run(
                    .init(capturePort: p.outboundPort, target: outbound, uid: nil, gid: nil, what: "an app connection to \(text)"))
                log("validate: app -> \(text) captured to :\(p.outboundPort), original destination \(got) (\(got.source.rawValue))")
            }
            log("validate: capture works")
        }
    }

    func parseHostPort(_ text: String, flag: String) throws -> (address: String, port: UInt16) {
        var host = text
        var portText = ""
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = String(text[close...].dropFirst().drop(while: { $0 == ":" }))
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            portText = String(text[text.index(after: colon)...])
        }
        guard let port = UInt16(portText), port > 0 else {
            throw ValidationError("\(flag): '\(text)' is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)")
        }
        return (host, port)
    }
}

func log(_ line: String) {
    FileHandle.standardError.write(Data("sidecar-init: \(line)\n".utf8))
}

/// Runs a step, turning a capture error into one clear line and exit status 1.
func runInit(_ body: () throws(CaptureError) -> Void) throws {
    do {
        try body()
    } catch {
        FileHandle.standardError.write(Data("sidecar-init: error: \(error.message)\n".utf8))
        throw ExitCode(1)
    }
}
