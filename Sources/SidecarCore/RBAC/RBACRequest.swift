import NIOCore
import NIOHTTP1

/// What RBAC decides on: one downstream connection and, for the HTTP filter, one request. Built once per
/// connection (network filter) or request (HTTP filter) and only when a chain has RBAC filters.
package struct RBACRequest {
    /// The connection's peer: `source_ip` and `direct_remote_ip`.
    package var source: IPAddress?
    /// The peer's port (the matcher form's `DirectSourceIPInput` has none; `SourcePortInput` reads `remotePort`).
    package var sourcePort: Int?
    /// `remote_ip`: the peer, or for HTTP the address `x-forwarded-for` names (see `ConnectionManagerHeaders.forwardedAddress`).
    package var remote: IPAddress?
    /// The port of `remote`: 0 when it is the `x-forwarded-for` address, as Envoy reports it (checked on 1.40).
    package var remotePort: Int?
    /// The downstream local address (the original destination when a listener filter restored it).
    package var destination: IPAddress?
    package var destinationPort: Int?
    /// nil: plaintext (Envoy's `connection.ssl() == nullptr`).
    package var security: ConnectionSecurity?
    /// The SNI tls_inspector read, "" when none was: Envoy's `requestedServerName()`, which a TLS transport
    /// socket alone does not set (checked on Envoy 1.40).
    package var requestedServerName: String
    /// The request, for the HTTP filter; nil for the network filter, where header and path rules never match.
    package var http: RouteRequest?

    package init(source: SocketAddress?, destination: SocketAddress?, security: ConnectionSecurity?,
         requestedServerName: String?, http: RouteRequest? = nil) {
        self.source = source.flatMap(IPAddress.init)
        self.sourcePort = source?.port
        self.remote = self.source
        self.remotePort = self.sourcePort
        self.destination = destination.flatMap(IPAddress.init)
        self.destinationPort = destination?.port
        self.security = security
        self.requestedServerName = requestedServerName ?? ""
        self.http = http
    }

    /// The HTTP filter's remote address when `x-forwarded-for` names one: Envoy's downstream remote address
    /// then has that IP and port 0.
    package mutating func useForwardedFor(_ address: IPAddress) {
        remote = address
        remotePort = 0
    }

    package func matchesHeader(_ matcher: HeaderMatcher) -> Bool {
        guard let http else { return false }
        return matcher.matches { Self.header($0, of: http) }
    }

    /// Envoy's `PathMatcher`: the path without query and fragment.
    package func matchesPath(_ matcher: StringMatcher) -> Bool {
        guard let http else { return false }
        let path = http.pathWithoutQuery
        return matcher.matches(path.endIndex == http.path.endIndex ? http.path : String(path))
    }
}
