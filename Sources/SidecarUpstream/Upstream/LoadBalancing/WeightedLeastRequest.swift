import Foundation

/// `LEAST_REQUEST` when the hosts' weights differ: each pick scores every host
/// `weight / (active + 1) ^ active_request_bias` and runs one step of smooth weighted round robin over those
/// scores. Envoy keeps an EDF schedule whose entries are re-weighted as hosts are re-inserted; scoring at pick
/// time gives the same long-run shares (weight over load) and reacts to load one pick sooner.
package struct WeightedLeastRequest: Sendable {
    private var current: [Double]
    private let weights: [Double]
    private let bias: Double

    /// - Parameters:
    ///   - weights: the candidates' configured weights.
    ///   - bias: `active_request_bias`; 0 ignores load (plain weighted round robin), 1 divides by load.
    package init(weights: [UInt32], bias: Double) {
        self.weights = weights.map { Double($0) }
        self.current = Array(repeating: 0, count: weights.count)
        // Envoy replaces a negative or NaN bias with 1.0 (with a warning).
        self.bias = bias.isNaN || bias < 0 ? 1.0 : bias
    }

    /// The score of a host with `weight` and `active` requests in flight.
    package static func effectiveWeight(_ weight: Double, active: Int, bias: Double) -> Double {
        let load = Double(max(active, 0)) + 1
        if bias == 0 { return weight }
        if bias == 1 { return weight / load }
        return weight / pow(load, bias)
    }

    /// The position (into the candidates) of the next host. `active(k)` is candidate k's requests in flight.
    package mutating func pick(active: (Int) -> Int) -> Int? {
        guard !weights.isEmpty else { return nil }
        var total = 0.0
        var best = 0
        for k in weights.indices {
            let w = Self.effectiveWeight(weights[k], active: active(k), bias: bias)
            current[k] += w
            total += w
            if current[k] > current[best] { best = k }
        }
        current[best] -= total
        return best
    }
}
