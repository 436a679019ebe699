/// A filter chain's or cluster's TLS: the context provider (rotated in place) and where its `ssl.*`
/// stats are counted.
struct TransportTLS: Sendable {
    let provider: TLSContextProvider
    let stats: TLSStats
}
