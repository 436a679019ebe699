import Glibc
import NIOCore
import NIOHTTP1
import SidecarCore

/// What the connection manager does to each request and response with its `ConnectionManagerHeaders`.
extension ConnectionManagerHeaders {
    static let alwaysRemoved = ["x-envoy-internal", "x-envoy-ip-tags", "x-envoy-force-trace"]
    static let externalRemoved = [
        "x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node",
        "x-envoy-original-path",
    ]

    /// Applies the request mutations. `peer` is the downstream connection's remote address; `newRequestID` makes
    /// the `x-request-id` the connection manager adds (the tracing stage decides on it as it is made).
    func mutateRequest(_ headers: inout HTTPHeaders, peer: SocketAddress?, random: inout FastRandom,
                       newRequestID: (inout FastRandom) -> String = { $0.uuid() }) {
        if Self.hasEnvoyHeader(headers) {
            for name in Self.alwaysRemoved { headers.remove(name: name) }
            if useRemoteAddress { for name in Self.externalRemoved { headers.remove(name: name) } }
        }
        if useRemoteAddress, let ip = peer?.ipAddress {
            if !skipXFFAppend {
                let appended = Self.isLoopback(peer!) ? localAddress : ip
                if let existing = headers.first(name: "x-forwarded-for") {
                    headers.replaceOrAdd(name: "x-forwarded-for", value: existing + "," + appended)
                } else {
                    headers.add(name: "x-forwarded-for", value: appended)
                }
            }
            headers.replaceOrAdd(name: "x-envoy-external-address", value: ip)
        }
        if let userAgent {
            headers.replaceOrAdd(name: "x-envoy-downstream-service-cluster", value: userAgent)
            if (headers.first(name: "user-agent") ?? "").isEmpty {
                headers.replaceOrAdd(name: "user-agent", value: userAgent)
            }
            if !nodeID.isEmpty { headers.replaceOrAdd(name: "x-envoy-downstream-service-node", value: nodeID) }
        }
        if generateRequestID {
            if useRemoteAddress && !preserveExternalRequestID {
                headers.replaceOrAdd(name: "x-request-id", value: newRequestID(&random))
            } else if !headers.contains(name: "x-request-id") {
                headers.add(name: "x-request-id", value: newRequestID(&random))
            }
        }
        if let via { Self.appendVia(&headers, via) }
    }

    /// Applies the response mutations; `requestID` is the request's `x-request-id`.
    func mutateResponse(_ headers: inout HTTPHeaders, requestID: String?) {
        if alwaysSetRequestIDInResponse, let requestID { headers.replaceOrAdd(name: "x-request-id", value: requestID) }
        if let via { Self.appendVia(&headers, via) }
    }

    /// The address the request comes from as Envoy decides it (RBAC's `remote_ip`), from the headers as
    /// `mutateRequest` left them: the `x-forwarded-for` entry (see `forwardedAddress`), else the peer.
    func remoteAddress(_ headers: HTTPHeaders, peer: IPAddress?) -> IPAddress? {
        forwardedAddress(headers) ?? peer
    }

    /// The client address `x-forwarded-for` gives: the entry `xff_num_trusted_hops` to the left of the last one a
    /// client or hop wrote; nil when the peer itself is the client (`use_remote_address` with no trusted hop) or
    /// there is no such valid entry.
    func forwardedAddress(_ headers: HTTPHeaders) -> IPAddress? {
        forwardedEntry(headers).flatMap { IPAddress(parsing: String($0)) }
    }

    /// The text of the entry `forwardedAddress` reads, when it is an IP address (`%DOWNSTREAM_REMOTE_ADDRESS%`).
    func forwardedAddressText(_ headers: HTTPHeaders) -> String? {
        guard let entry = forwardedEntry(headers) else { return nil }
        let text = String(entry)
        return IPAddress(parsing: text) == nil ? nil : text
    }

    private func forwardedEntry(_ headers: HTTPHeaders) -> Substring? {
        if useRemoteAddress && xffNumTrustedHops == 0 { return nil }
        var entries: [Substring] = []
        for value in headers["x-forwarded-for"] { entries += value.split(separator: ",", omittingEmptySubsequences: false) }
        let fromRight = xffNumTrustedHops + (useRemoteAddress && skipXFFAppend ? 0 : 1)
        guard fromRight >= 1, entries.count >= fromRight else { return nil }
        var text = entries[entries.count - fromRight]
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return text
    }

    static func appendVia(_ headers: inout HTTPHeaders, _ via: String) {
        if let existing = headers.first(name: "via"), !existing.isEmpty {
            headers.replaceOrAdd(name: "via", value: existing + ", " + via)
        } else {
            headers.replaceOrAdd(name: "via", value: via)
        }
    }

    /// One pass over the names: most requests carry no `x-envoy-*` header, and then nothing is searched for.
    static func hasEnvoyHeader(_ headers: HTTPHeaders) -> Bool {
        for (name, _) in headers where name.utf8.count > 8 {
            var it = name.utf8.makeIterator()
            var match = true
            for expected in "x-envoy-".utf8 {
                guard var c = it.next() else { match = false; break }
                if c >= 65 && c <= 90 { c += 32 }
                if c != expected { match = false; break }
            }
            if match { return true }
        }
        return false
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    /// Envoy's `Network::Utility::getLocalAddress`: the first non-loopback IPv4 address of an interface that is up.
    static func hostLocalAddress() -> String {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return "127.0.0.1" }
        defer { freeifaddrs(first) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            guard let sa = ifa.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET),
                  ifa.pointee.ifa_flags & UInt32(IFF_UP) != 0, ifa.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0
            else { continue }
            var addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            guard inet_ntop(AF_INET, &addr, &buffer, socklen_t(INET_ADDRSTRLEN)) != nil else { continue }
            return String(cString: buffer)
        }
        return "127.0.0.1"
    }
}
