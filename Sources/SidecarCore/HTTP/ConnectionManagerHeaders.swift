import Glibc
import NIOCore
import NIOHTTP1

/// What the connection manager does to every request's headers before any HTTP filter sees them, and to every
/// response's after the last encoder: Envoy's `ConnectionManagerUtility::mutateRequestHeaders` /
/// `mutateResponseHeaders`, with Envoy 1.40's behaviour as observed (no `internal_address_config`, so no request is
/// internal):
///
/// - `x-envoy-internal`, `x-envoy-ip-tags` and `x-envoy-force-trace` never reach the upstream from a client;
/// - `use_remote_address: true`: the peer is appended to `x-forwarded-for` (a loopback peer as the host's own
///   address, as Envoy does) unless `skip_xff_append`; `x-envoy-external-address` is the peer; the headers a client
///   must not set (`x-envoy-decorator-operation`, `x-envoy-downstream-service-cluster`/`-node`,
///   `x-envoy-original-path`) are removed; a client's `x-request-id` is replaced unless
///   `preserve_external_request_id`;
/// - `add_user_agent`: `x-envoy-downstream-service-cluster` (and `user-agent` when absent) is the node's cluster,
///   `x-envoy-downstream-service-node` its id;
/// - `generate_request_id` (default on): an `x-request-id` when there is none;
/// - `via`: appended to the request's and the response's `via`.
package struct ConnectionManagerHeaders: Sendable {
    package var useRemoteAddress = false
    package var skipXFFAppend = false
    package var xffNumTrustedHops = 0
    package var generateRequestID = true
    package var preserveExternalRequestID = false
    package var alwaysSetRequestIDInResponse = false
    /// `add_user_agent`: the node's cluster (nil: off).
    package var userAgent: String?
    package var nodeID = ""
    package var via: String?
    /// What a loopback peer is appended to `x-forwarded-for` as: Envoy's local address (the host's first
    /// non-loopback address).
    package var localAddress = "127.0.0.1"

    package init() {}

    package static let alwaysRemoved = ["x-envoy-internal", "x-envoy-ip-tags", "x-envoy-force-trace"]
    package static let externalRemoved = [
        "x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node",
        "x-envoy-original-path",
    ]

    /// Applies the request mutations. `peer` is the downstream connection's remote address.
    package func mutateRequest(_ headers: inout HTTPHeaders, peer: SocketAddress?, random: inout FastRandom) {
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
                headers.replaceOrAdd(name: "x-request-id", value: random.uuid())
            } else if !headers.contains(name: "x-request-id") {
                headers.add(name: "x-request-id", value: random.uuid())
            }
        }
        if let via { Self.appendVia(&headers, via) }
    }

    /// Applies the response mutations; `requestID` is the request's `x-request-id`.
    package func mutateResponse(_ headers: inout HTTPHeaders, requestID: String?) {
        if alwaysSetRequestIDInResponse, let requestID { headers.replaceOrAdd(name: "x-request-id", value: requestID) }
        if let via { Self.appendVia(&headers, via) }
    }

    /// The address the request comes from as Envoy decides it (RBAC's `remote_ip`), from the headers as
    /// `mutateRequest` left them: the `x-forwarded-for` entry (see `forwardedAddress`), else the peer.
    package func remoteAddress(_ headers: HTTPHeaders, peer: IPAddress?) -> IPAddress? {
        forwardedAddress(headers) ?? peer
    }

    /// The client address `x-forwarded-for` gives: the entry `xff_num_trusted_hops` to the left of the last one a
    /// client or hop wrote; nil when the peer itself is the client (`use_remote_address` with no trusted hop) or
    /// there is no such valid entry.
    package func forwardedAddress(_ headers: HTTPHeaders) -> IPAddress? {
        forwardedEntry(headers).flatMap { IPAddress(parsing: String($0)) }
    }

    /// The text of the entry `forwardedAddress` reads, when it is an IP address (`%DOWNSTREAM_REMOTE_ADDRESS%`).
    package func forwardedAddressText(_ headers: HTTPHeaders) -> String? {
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

    package static func appendVia(_ headers: inout HTTPHeaders, _ via: String) {
        if let existing = headers.first(name: "via"), !existing.isEmpty {
            headers.replaceOrAdd(name: "via", value: existing + ", " + via)
        } else {
            headers.replaceOrAdd(name: "via", value: via)
        }
    }

    /// One pass over the names: most requests carry no `x-envoy-*` header, and then nothing is searched for.
    package static func hasEnvoyHeader(_ headers: HTTPHeaders) -> Bool {
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

    package static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    /// Envoy's `Network::Utility::getLocalAddress`: the first non-loopback IPv4 address of an interface that is up.
    package static func hostLocalAddress() -> String {
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
