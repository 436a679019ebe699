import Sidecar

/// A `DiscoveryResponse` from a control plane, as its protobuf bytes arrive on the ADS stream: parsed, checked for
/// fields Pilotfish's subset lacks, written as JSON and decoded as CDS, EDS or RDS (`XDSResourceDecoding`). Any
/// input is a set of resources, a refusal (the NACK's error) or not a response at all.
enum XDSFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        _ = try? XDSResourceDecoding.decodeResponse(Array(input))
    }
}
