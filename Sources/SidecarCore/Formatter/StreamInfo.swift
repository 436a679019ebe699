import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What Envoy's `StreamInfo` knows about one request, as far as format commands read it. The connection handler
/// keeps the raw facts as the request goes and builds this only when a format needs it, so a request whose header
/// mutations are all literals never pays for it. Nil means "not known (yet)": the command renders as missing.
public struct StreamInfo: Sendable {
    /// When the request started; nil when the stream did not record it (the format reads the clock instead).
    public var startTime: StreamStartTime?
    /// The last byte of the request was received (Envoy's `lastDownstreamRxByteReceived`).
    public var requestEnd: NIODeadline?
    /// The first byte of the upstream response was received (`firstUpstreamRxByteReceived`).
    public var upstreamResponseStart: NIODeadline?
    /// The response was completely sent.
    public var end: NIODeadline?
    /// The status sent downstream. Envoy sets it when the response leaves, so response header mutations of a
    /// local reply see none (`%RESPONSE_CODE%` renders 0 there, as in Envoy).
    public var responseCode: Int?
    public var responseFlags: ResponseFlags = []
    /// Body bytes received from the downstream and sent to it.
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// `HTTP/1.1`, `HTTP/1.0`.
    public var protocolName: String?
    public var upstreamHost: StreamAddress?
    public var upstreamCluster: String?
    /// Envoy counts the first try as 1 as soon as the router has a route; 0 without one.
    public var upstreamRequestAttemptCount: Int?
    public var routeName: String?
    /// The client: the peer, or the address `x-forwarded-for` gives under the connection manager's rules (port 0).
    public var downstreamRemoteAddress: StreamAddress?
    /// The peer of the downstream connection.
    public var downstreamDirectRemoteAddress: StreamAddress?
    /// Where the downstream connection was going: the original destination when one was restored.
    public var downstreamLocalAddress: StreamAddress?
    public var requestedServerName: String?
    public var hostname: String = ""
    /// Why the response is what it is, in Envoy's words (`via_upstream`, `route_not_found`, ...): nil where
    /// Pilotfish does not know Envoy's word for it.
    public var responseCodeDetails: String?
    /// The local address of the upstream connection that carried the request.
    public var upstreamLocalAddress: StreamAddress?
    /// Why connecting upstream failed, as Envoy words it (`delayed_connect_error:_Connection_refused`).
    public var upstreamTransportFailureReason: String?
    /// The downstream connection's number, unique in the process.
    public var connectionID: UInt64?
    /// The downstream TLS peer's URI SANs, comma-separated; nil without TLS or without any.
    public var downstreamPeerURISAN: String?
    /// The health_check HTTP filter answered the request (`not_health_check_filter`).
    public var healthCheck = false
    /// What "now" is for commands that measure up to it (`%DURATION%` of a stream not ended): fixed by tests,
    /// else the clock when the command renders.
    public var now: NIODeadline?

    @inlinable
    public init() {}
}

/// When a request started: the wall clock for `%START_TIME%` and the monotonic clock for durations.
public struct StreamStartTime: Sendable, Equatable {
    public var nanosecondsSinceEpoch: Int64
    public var monotonic: NIODeadline

    public init(nanosecondsSinceEpoch: Int64, monotonic: NIODeadline) {
        self.nanosecondsSinceEpoch = nanosecondsSinceEpoch
        self.monotonic = monotonic
    }

    public static func now() -> StreamStartTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return StreamStartTime(nanosecondsSinceEpoch: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec),
                               monotonic: .now())
    }
}

/// An address as format commands print it: `1.2.3.4:80`, `[::1]:80`.
public struct StreamAddress: Sendable, Equatable {
    public var ip: String
    public var port: Int
    public var isV6: Bool

    public init(ip: String, port: Int) {
        self.ip = ip
        self.port = port
        self.isV6 = ip.utf8.contains(UInt8(ascii: ":"))
    }

    /// Nil for a Unix socket.
    public init?(_ address: SocketAddress) {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        self.init(ip: ip, port: port)
    }

    package func render(_ part: FormatCommand.AddressPart, into out: inout [UInt8]) {
        switch part {
        case .withPort:
            if isV6 {
                out.append(UInt8(ascii: "["))
                out.appendText(ip)
                out.append(UInt8(ascii: "]"))
            } else {
                out.appendText(ip)
            }
            out.append(UInt8(ascii: ":"))
            out.appendDecimal(port)
        case .withoutPort:
            out.appendText(ip)
        case .port:
            out.appendDecimal(port)
        }
    }
}
