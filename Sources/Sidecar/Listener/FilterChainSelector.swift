import NIOCore
import SidecarCore

/// Envoy's filter chain selection: criteria in order of precedence (destination port, destination IP,
/// server name, transport protocol, application protocols, source IP). At each step the chains that match the
/// connection most specifically stay; only when none does, the chains that leave the criterion open
/// stay. Whatever is left first wins; with nothing left, the default chain (if any).
struct FilterChainSelector: Sendable {
    let chains: [FilterChainMatch]
    let hasDefault: Bool

    struct Connection {
        var destination: SocketAddress?
        var source: SocketAddress?
        var serverName: String?
        var transportProtocol = "raw_buffer"
        var applicationProtocols: [String] = []
    }

    /// The index of the chosen chain: `0..<chains.count`, `chains.count` for the default chain, nil for none.
    func select(_ c: Connection) -> Int? {
        var candidates = Array(chains.indices)
        let port = c.destination?.port
        let byPort = candidates.filter { chains[$0].destinationPort != nil && chains[$0].destinationPort == port }
        candidates = byPort.isEmpty ? candidates.filter { chains[$0].destinationPort == nil } : byPort
        candidates = narrow(candidates, by: \.prefixRanges, address: c.destination)
        candidates = narrowByServerName(candidates, c.serverName)
        let byTransport = candidates.filter { chains[$0].transportProtocol == c.transportProtocol }
        candidates = byTransport.isEmpty ? candidates.filter { chains[$0].transportProtocol == nil } : byTransport
        let byApp = candidates.filter { i in chains[i].applicationProtocols.contains { c.applicationProtocols.contains($0) } }
        candidates = byApp.isEmpty ? candidates.filter { chains[$0].applicationProtocols.isEmpty } : byApp
        candidates = narrow(candidates, by: \.sourcePrefixRanges, address: c.source)
        if let first = candidates.first { return first }
        return hasDefault ? chains.count : nil
    }

    /// Exact server name first, then the longest matching `*.suffix`, else the chains without names.
    private func narrowByServerName(_ candidates: [Int], _ name: String?) -> [Int] {
        if let name {
            let exact = candidates.filter { chains[$0].serverNames.contains(name) }
            if !exact.isEmpty { return exact }
            var best = 0
            var bestChains: [Int] = []
            for i in candidates {
                for pattern in chains[i].serverNames where pattern.hasPrefix("*.") && name.hasSuffix(pattern.dropFirst()) {
                    if pattern.count > best {
                        best = pattern.count
                        bestChains = [i]
                    } else if pattern.count == best {
                        bestChains.append(i)
                    }
                }
            }
            if !bestChains.isEmpty { return bestChains }
        }
        return candidates.filter { chains[$0].serverNames.isEmpty }
    }

    /// Keeps the chains whose ranges hold the address with the longest prefix, else those without ranges.
    private func narrow(_ candidates: [Int], by ranges: KeyPath<FilterChainMatch, [CIDRRange]>, address: SocketAddress?) -> [Int] {
        var best = -1
        var bestChains: [Int] = []
        for i in candidates {
            guard let address else { continue }
            let longest = chains[i][keyPath: ranges].filter { $0.contains(address) }.map(\.prefixLength).max() ?? -1
            if longest > best {
                best = longest
                bestChains = [i]
            } else if longest == best && longest >= 0 {
                bestChains.append(i)
            }
        }
        return best >= 0 ? bestChains : candidates.filter { chains[$0][keyPath: ranges].isEmpty }
    }
}
