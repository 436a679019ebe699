/// The data inputs an RBAC match tree reads, as Envoy 1.40's RBAC filters provide them
/// (`Http::Matching::HttpMatchingDataImpl` over the connection and the request headers).
package enum RBACMatchInput: Sendable, Equatable {
    /// `envoy.type.matcher.v3.HttpRequestHeaderMatchInput` (HTTP filter only): every value of the header
    /// joined with ",", as the header rules read it; absent when the request has none. The name is lowercased.
    case requestHeader(String)
    /// `SourceIPInput`: the downstream remote address, which for HTTP is the `x-forwarded-for` address when
    /// there is a valid one (as `remote_ip`), else the peer.
    case sourceIP
    /// `SourcePortInput`: the port of that address (0 when it came from `x-forwarded-for`).
    case sourcePort
    /// `DirectSourceIPInput`: the peer, whatever `x-forwarded-for` says.
    case directSourceIP
    /// `DestinationIPInput` / `DestinationPortInput`: the downstream local address (the original destination
    /// when a listener filter restored it).
    case destinationIP
    case destinationPort
    /// `ServerNameInput`: the SNI tls_inspector read; absent when there is none.
    case serverName
    /// `envoy.extensions.matching.common_inputs.ssl.v3`: `UriSanInput` and `DnsSanInput` join the peer
    /// certificate's SANs with ","; `SubjectInput` is its RFC 2253 subject. Absent when there are none; on a
    /// plaintext connection they are not available at all, which makes the whole match undecided (denied).
    case uriSAN
    case dnsSAN
    case subject

    /// What the input reads from `request`.
    package func read(_ request: RBACRequest) -> RBACInputValue {
        switch self {
        case .requestHeader(let name):
            guard let http = request.http, let value = RBACRequest.header(name, of: http) else { return .absent }
            return .text(value)
        case .sourceIP:
            return request.remote.map(RBACInputValue.address) ?? .absent
        case .sourcePort:
            return request.remotePort.map { .text(String($0)) } ?? .absent
        case .directSourceIP:
            return request.source.map(RBACInputValue.address) ?? .absent
        case .destinationIP:
            return request.destination.map(RBACInputValue.address) ?? .absent
        case .destinationPort:
            return request.destinationPort.map { .text(String($0)) } ?? .absent
        case .serverName:
            return request.requestedServerName.isEmpty ? .absent : .text(request.requestedServerName)
        case .uriSAN:
            guard let security = request.security else { return .notAvailable }
            return security.peerURISANs.isEmpty ? .absent : .text(security.peerURISANs.joined(separator: ","))
        case .dnsSAN:
            guard let security = request.security else { return .notAvailable }
            return security.peerDNSSANs.isEmpty ? .absent : .text(security.peerDNSSANs.joined(separator: ","))
        case .subject:
            guard let security = request.security else { return .notAvailable }
            return security.peerSubject.isEmpty ? .absent : .text(security.peerSubject)
        }
    }

    /// It reads the address `x-forwarded-for` may replace, so the HTTP filter must parse that header.
    package var usesRemoteIP: Bool { self == .sourceIP || self == .sourcePort }
}

/// What an input read: Envoy's `DataInputGetResult` for the inputs RBAC has.
package enum RBACInputValue: Equatable {
    /// Envoy's `NotAvailable`: no answer can be given (the TLS inputs on a plaintext connection).
    case notAvailable
    /// Envoy's `absl::monostate`: available but empty. No string matcher matches it.
    case absent
    case text(String)
    /// An address, kept unformatted so that an `Ip` matcher need not parse it back.
    case address(IPAddress)
}
