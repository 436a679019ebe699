/// Where an endpoint sits in its cluster's load assignment (`LocalityLbEndpoints`): the priority it serves at,
/// the locality it belongs to with that locality's weight, and the health the control plane gives it
/// (`LbEndpoint.health_status`).
extension Cluster {
    /// `envoy.config.core.v3.Locality`.
    public struct Locality: Sendable, Hashable {
        public var region: String
        public var zone: String
        public var subZone: String

        public init(region: String = "", zone: String = "", subZone: String = "") {
            self.region = region
            self.zone = zone
            self.subZone = subZone
        }
    }

    /// `LbEndpoint.health_status` (`envoy.config.core.v3.HealthStatus`) as the load balancer sees it. Envoy counts
    /// UNKNOWN and HEALTHY as healthy; UNHEALTHY, DRAINING and TIMEOUT take the host out of the healthy set
    /// (`/clusters` shows `/failed_eds_health`). DEGRADED is refused when decoding: Pilotfish has no degraded tier.
    public enum EndpointHealthStatus: String, Sendable, Hashable, CaseIterable {
        case UNKNOWN, HEALTHY, UNHEALTHY, DRAINING, TIMEOUT

        public var isHealthy: Bool { self == .UNKNOWN || self == .HEALTHY }
    }

    /// The `LocalityLbEndpoints` entry an endpoint came from.
    public struct EndpointGroup: Sendable, Hashable {
        /// `priority`: 0 is the highest; lower priorities take load as higher ones lose health.
        public var priority: UInt32
        /// The entry's position in the load assignment's `endpoints` (one locality each).
        public var index: Int
        public var locality: Locality
        /// `load_balancing_weight` of the locality (0 when unset: no share under locality-weighted balancing).
        public var localityWeight: UInt32

        public init(priority: UInt32 = 0, index: Int = 0, locality: Locality = Locality(), localityWeight: UInt32 = 0) {
            self.priority = priority
            self.index = index
            self.locality = locality
            self.localityWeight = localityWeight
        }
    }
}

extension Cluster.Locality {
    /// As error messages show it: `{region: r, zone: z, sub_zone: s}`.
    public var text: String { "{region: \"\(region)\", zone: \"\(zone)\", sub_zone: \"\(subZone)\"}" }
}
