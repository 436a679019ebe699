/// Weighted round robin that interleaves (nginx's smooth algorithm): weights 5/2/3 give
/// a a b a c a b a c a rather than five a's in a row. Equal weights reduce to plain rotation.
public struct SmoothRoundRobin: Sendable {
    private var weights: [Int]
    private var current: [Int]
    private let total: Int
    private let uniform: Bool
    private var next = 0

    public init(weights: [UInt32], start: Int = 0) {
        self.init(shares: weights.map { Int($0) }, start: start)
    }

    /// Weights wider than `UInt32` (locality weights scaled by health).
    public init(shares: [Int], start: Int = 0) {
        self.weights = shares
        self.current = Array(repeating: 0, count: shares.count)
        self.total = shares.reduce(0, +)
        self.uniform = Set(shares).count <= 1
        self.next = shares.isEmpty ? 0 : start % shares.count
    }

    /// The index of the next host, or nil when there are none.
    public mutating func pick() -> Int? {
        guard !weights.isEmpty else { return nil }
        if uniform {
            let i = next
            next = (next + 1) % weights.count
            return i
        }
        var best = 0
        for i in 0..<weights.count {
            current[i] += weights[i]
            if current[i] > current[best] { best = i }
        }
        current[best] -= total
        return best
    }
}
