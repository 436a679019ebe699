import NIOCore

extension UpstreamHost {
    /// The text Envoy hashes to place a host on a ring-hash ring or in a Maglev table: the address as
    /// `Address::Instance::asString()` prints it (`10.0.0.1:80`, `[::1]:80`, a socket path). Using the same
    /// text means a cluster's keys map to the same endpoints here as behind Envoy.
    package var hashKey: String {
        switch address {
        case .v4:
            return "\(address.ipAddress ?? ""):\(address.port ?? 0)"
        case .v6:
            return "[\(address.ipAddress ?? "")]:\(address.port ?? 0)"
        case .unixDomainSocket:
            return address.pathname ?? ""
        }
    }
}
