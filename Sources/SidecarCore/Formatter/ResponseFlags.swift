/// One of Envoy's response flags (`%RESPONSE_FLAGS%`): why a response is what it is, when the proxy had a hand in
/// it. Envoy's `CoreResponseFlag`, with its short and long names.
public enum ResponseFlag: Int, Sendable, CaseIterable {
    case failedLocalHealthCheck, noHealthyUpstream, upstreamRequestTimeout, localReset, upstreamRemoteReset,
         upstreamConnectionFailure, upstreamConnectionTermination, upstreamOverflow, noRouteFound, delayInjected,
         faultInjected, rateLimited, unauthorizedExternalService, rateLimitServiceError,
         downstreamConnectionTermination, upstreamRetryLimitExceeded, streamIdleTimeout, invalidEnvoyRequestHeaders,
         downstreamProtocolError, upstreamMaxStreamDurationReached, responseFromCacheFilter, noFilterConfigFound,
         durationTimeout, upstreamProtocolError, noClusterFound, overloadManager, dnsResolutionFailed, dropOverload,
         downstreamRemoteReset, unconditionalDropOverload

    package static let names: [(short: String, long: String)] = [
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

    public var shortName: String { Self.names[rawValue].short }
    public var longName: String { Self.names[rawValue].long }
}

/// The flags a stream collected, in the order they were set: Envoy 1.40 prints them that way (a connect failure
/// whose retries ran out is `URX,UF`: the retry decision comes before the failure is reported). Empty costs
/// nothing; flags are only set on failure paths.
public struct ResponseFlags: Sendable, Equatable, ExpressibleByArrayLiteral {
    public private(set) var flags: [ResponseFlag] = []

    public init(arrayLiteral elements: ResponseFlag...) {
        for f in elements { insert(f) }
    }

    public var isEmpty: Bool { flags.isEmpty }

    public func contains(_ flag: ResponseFlag) -> Bool { flags.contains(flag) }

    public mutating func insert(_ flag: ResponseFlag) {
        if !flags.contains(flag) { flags.append(flag) }
    }

    /// Envoy's `ResponseFlagUtils::toShortString` / `toString`: the names joined by commas, `-` when none.
    package func render(long: Bool, into out: inout [UInt8]) {
        if flags.isEmpty {
            out.append(UInt8(ascii: "-"))
            return
        }
        for (i, flag) in flags.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.appendText(long ? flag.longName : flag.shortName)
        }
    }

    package func render(long: Bool, into out: inout String) {
        if isEmpty {
            out += "-"
            return
        }
        var bytes: [UInt8] = []
        render(long: long, into: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }
}
