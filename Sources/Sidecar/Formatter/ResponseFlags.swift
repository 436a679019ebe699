/// Envoy's response flags (`%RESPONSE_FLAGS%`): why a response is what it is, when the proxy had a hand in it.
/// Bits in Envoy's `CoreResponseFlag` order, which is the order they are printed in.
public struct ResponseFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let failedLocalHealthCheck = Self(rawValue: 1 << 0)
    public static let noHealthyUpstream = Self(rawValue: 1 << 1)
    public static let upstreamRequestTimeout = Self(rawValue: 1 << 2)
    public static let localReset = Self(rawValue: 1 << 3)
    public static let upstreamRemoteReset = Self(rawValue: 1 << 4)
    public static let upstreamConnectionFailure = Self(rawValue: 1 << 5)
    public static let upstreamConnectionTermination = Self(rawValue: 1 << 6)
    public static let upstreamOverflow = Self(rawValue: 1 << 7)
    public static let noRouteFound = Self(rawValue: 1 << 8)
    public static let delayInjected = Self(rawValue: 1 << 9)
    public static let faultInjected = Self(rawValue: 1 << 10)
    public static let rateLimited = Self(rawValue: 1 << 11)
    public static let unauthorizedExternalService = Self(rawValue: 1 << 12)
    public static let rateLimitServiceError = Self(rawValue: 1 << 13)
    public static let downstreamConnectionTermination = Self(rawValue: 1 << 14)
    public static let upstreamRetryLimitExceeded = Self(rawValue: 1 << 15)
    public static let streamIdleTimeout = Self(rawValue: 1 << 16)
    public static let invalidEnvoyRequestHeaders = Self(rawValue: 1 << 17)
    public static let downstreamProtocolError = Self(rawValue: 1 << 18)
    public static let upstreamMaxStreamDurationReached = Self(rawValue: 1 << 19)
    public static let responseFromCacheFilter = Self(rawValue: 1 << 20)
    public static let noFilterConfigFound = Self(rawValue: 1 << 21)
    public static let durationTimeout = Self(rawValue: 1 << 22)
    public static let upstreamProtocolError = Self(rawValue: 1 << 23)
    public static let noClusterFound = Self(rawValue: 1 << 24)
    public static let overloadManager = Self(rawValue: 1 << 25)
    public static let dnsResolutionFailed = Self(rawValue: 1 << 26)
    public static let dropOverload = Self(rawValue: 1 << 27)
    public static let downstreamRemoteReset = Self(rawValue: 1 << 28)
    public static let unconditionalDropOverload = Self(rawValue: 1 << 29)

    /// (short, long) names by bit.
    static let names: [(String, String)] = [
        ("LH", "FailedLocalHealthCheck"), ("UH", "NoHealthyUpstream"), ("UT", "UpstreamRequestTimeout"),
        ("LR", "LocalReset"), ("UR", "UpstreamRemoteReset"), ("UF", "UpstreamConnectionFailure"),
        ("UC", "UpstreamConnectionTermination"), ("UO", "UpstreamOverflow"), ("NR", "NoRouteFound"),
        ("DI", "DelayInjected"), ("FI", "FaultInjected"), ("RL", "RateLimited"),
        ("UAEX", "UnauthorizedExternalService"), ("RLSE", "RateLimitServiceError"),
        ("DC", "DownstreamConnectionTermination"), ("URX", "UpstreamRetryLimitExceeded"),
        ("SI", "StreamIdleTimeout"), ("IH", "InvalidEnvoyRequestHeaders"), ("DPE", "DownstreamProtocolError"),
        ("UMSDR", "UpstreamMaxStreamDurationReached"), ("RFCF", "ResponseFromCacheFilter"),
        ("NFCF", "NoFilterConfigFound"), ("DT", "DurationTimeout"), ("UPE", "UpstreamProtocolError"),
        ("NC", "NoClusterFound"), ("OM", "OverloadManager"), ("DF", "DnsResolutionFailed"),
        ("DO", "DropOverload"), ("DR", "DownstreamRemoteReset"), ("UDO", "UnconditionalDropOverload"),
    ]

    /// Envoy's `ResponseFlagUtils::toShortString` / `toString`: the names joined by commas, `-` when none.
    func render(long: Bool, into out: inout String) {
        if isEmpty {
            out += "-"
            return
        }
        var first = true
        for (bit, name) in Self.names.enumerated() where rawValue & (1 << UInt32(bit)) != 0 {
            if !first { out += "," }
            first = false
            out += long ? name.1 : name.0
        }
    }
}
