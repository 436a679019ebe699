/// A filter chain's or cluster's TLS: the context provider (rotated in place) and where its `ssl.*`
/// stats are counted.
package struct TransportTLS: Sendable {
    package let provider: TLSContextProvider
    package let stats: TLSStats

    package init(provider: TLSContextProvider, stats: TLSStats) {
        self.provider = provider
        self.stats = stats
    }
}
