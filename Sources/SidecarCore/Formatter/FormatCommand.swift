/// One `%COMMAND(argument):length%` of a substitution format string, resolved at config load: Envoy's formatter
/// providers (`source/common/formatter/`), limited to the commands Pilotfish has the data for.
public enum FormatCommand: Sendable, Equatable {
    /// `%REQ(X?Y):Z%`, `%RESP(X?Y):Z%`, `%TRAILER(X?Y):Z%`.
    case requestHeader(HeaderLookup)
    case responseHeader(HeaderLookup)
    case responseTrailer(HeaderLookup)
    /// `%REQ_WITHOUT_QUERY(X?Y):Z%`: only where Envoy has the `envoy.formatter.req_without_query` extension
    /// (access logs that list it); `*_headers_to_add` refuse it, as Envoy does.
    case requestHeaderWithoutQuery(HeaderLookup)
    /// `%START_TIME%`, `%START_TIME(format)%`.
    case startTime(StartTimeFormat)
    /// Milliseconds from the start of the request: to now, or to its end when it has ended (`%DURATION%`); to the
    /// last byte of the request (`%REQUEST_DURATION%`); to the first byte of the upstream response
    /// (`%RESPONSE_DURATION%`).
    case duration, requestDuration, responseDuration
    case responseCode, responseCodeDetails
    case responseFlags, responseFlagsLong
    case bytesReceived, bytesSent
    case protocolName
    case upstreamHost, upstreamCluster, upstreamRequestAttemptCount
    case routeName
    case upstreamLocalAddress(AddressPart)
    case upstreamTransportFailureReason
    case connectionID
    case downstreamPeerURISAN
    case downstreamRemoteAddress(AddressPart)
    case downstreamDirectRemoteAddress(AddressPart)
    case downstreamLocalAddress(AddressPart)
    case requestedServerName
    case hostname
    /// Envoy's stream id: the request's `x-request-id`.
    case streamID

    public enum AddressPart: Sendable, Equatable {
        case withPort, withoutPort, port
    }

    /// Envoy's `CommandSyntaxChecker` flags.
    package enum Syntax {
        /// No `(argument)`, no `:length`.
        case commandOnly
        /// `(argument)` required, `:length` allowed.
        case headerLike
        /// `(argument)` optional, no `:length`.
        case optionalArgument
    }

    /// The commands without an argument, by name.
    package static let plain: [String: FormatCommand] = [
        "DURATION": .duration,
        "REQUEST_DURATION": .requestDuration,
        "RESPONSE_DURATION": .responseDuration,
        "RESPONSE_CODE": .responseCode,
        "RESPONSE_CODE_DETAILS": .responseCodeDetails,
        "RESPONSE_FLAGS": .responseFlags,
        "RESPONSE_FLAGS_LONG": .responseFlagsLong,
        "BYTES_RECEIVED": .bytesReceived,
        "BYTES_SENT": .bytesSent,
        "PROTOCOL": .protocolName,
        "UPSTREAM_HOST": .upstreamHost,
        "UPSTREAM_CLUSTER": .upstreamCluster,
        "UPSTREAM_REQUEST_ATTEMPT_COUNT": .upstreamRequestAttemptCount,
        "ROUTE_NAME": .routeName,
        "UPSTREAM_LOCAL_ADDRESS": .upstreamLocalAddress(.withPort),
        "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": .upstreamLocalAddress(.withoutPort),
        "UPSTREAM_LOCAL_PORT": .upstreamLocalAddress(.port),
        "UPSTREAM_TRANSPORT_FAILURE_REASON": .upstreamTransportFailureReason,
        "CONNECTION_ID": .connectionID,
        "DOWNSTREAM_PEER_URI_SAN": .downstreamPeerURISAN,
        "DOWNSTREAM_REMOTE_ADDRESS": .downstreamRemoteAddress(.withPort),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": .downstreamRemoteAddress(.withoutPort),
        "DOWNSTREAM_REMOTE_PORT": .downstreamRemoteAddress(.port),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": .downstreamDirectRemoteAddress(.withPort),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": .downstreamDirectRemoteAddress(.withoutPort),
        "DOWNSTREAM_DIRECT_REMOTE_PORT": .downstreamDirectRemoteAddress(.port),
        "DOWNSTREAM_LOCAL_ADDRESS": .downstreamLocalAddress(.withPort),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": .downstreamLocalAddress(.withoutPort),
        "DOWNSTREAM_LOCAL_PORT": .downstreamLocalAddress(.port),
        "REQUESTED_SERVER_NAME": .requestedServerName,
        "HOSTNAME": .hostname,
        "STREAM_ID": .streamID,
    ]

    /// Commands Envoy 1.40 knows that Pilotfish does not implement: a format using one is refused at load, naming
    /// it, rather than rendering something else.
    package static let envoyOnly: Set<String> = [
        "LOCAL_REPLY_BODY", "GRPC_STATUS", "GRPC_STATUS_NUMBER", "ACCESS_LOG_TYPE", "TRACE_ID", "UNIQUE_ID",
        "REQUEST_HEADERS_BYTES", "RESPONSE_HEADERS_BYTES", "RESPONSE_TRAILERS_BYTES", "QUERY_PARAM", "PATH",
        "CUSTOM_FLAGS", "REQUEST_TX_DURATION", "RESPONSE_TX_DURATION", "DOWNSTREAM_HANDSHAKE_DURATION",
        "ROUNDTRIP_DURATION", "COMMON_DURATION", "UPSTREAM_HEADER_BYTES_RECEIVED", "UPSTREAM_WIRE_BYTES_RECEIVED",
        "UPSTREAM_WIRE_BYTES_SENT", "UPSTREAM_HEADER_BYTES_SENT", "DOWNSTREAM_WIRE_BYTES_RECEIVED",
        "DOWNSTREAM_HEADER_BYTES_RECEIVED", "DOWNSTREAM_WIRE_BYTES_SENT", "DOWNSTREAM_HEADER_BYTES_SENT",
        "BYTES_RETRANSMITTED", "PACKETS_RETRANSMITTED", "UPSTREAM_PROTOCOL",
        "CONNECTION_TERMINATION_DETAILS", "UPSTREAM_HOST_NAME", "UPSTREAM_HOST_NAME_WITHOUT_PORT",
        "UPSTREAM_CLUSTER_RAW", "UPSTREAM_REMOTE_ADDRESS", "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
        "UPSTREAM_REMOTE_PORT", "UPSTREAM_REQUEST_ATTEMPT_COUNT_FOR_CLUSTER",
        "UPSTREAM_DETECTED_CLOSE_TYPE", "UPSTREAM_LOCAL_CLOSE_REASON", "UPSTREAM_CONNECTION_POOL_READY_DURATION",
        "DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID", "DOWNSTREAM_LOCAL_DNS_SAN", "DOWNSTREAM_LOCAL_URI_SAN",
        "DOWNSTREAM_LOCAL_SUBJECT", "DOWNSTREAM_LOCAL_EMAIL_SAN", "DOWNSTREAM_LOCAL_IP_SAN",
        "DOWNSTREAM_PEER_DNS_SAN", "DOWNSTREAM_PEER_SUBJECT", "DOWNSTREAM_PEER_ISSUER",
        "DOWNSTREAM_PEER_EMAIL_SAN", "DOWNSTREAM_PEER_IP_SAN", "DOWNSTREAM_PEER_OTHERNAME_SAN",
        "DOWNSTREAM_PEER_FINGERPRINT_256", "DOWNSTREAM_PEER_FINGERPRINT_1", "DOWNSTREAM_PEER_SERIAL",
        "DOWNSTREAM_PEER_CERT", "DOWNSTREAM_PEER_CERT_V_START", "DOWNSTREAM_PEER_CERT_V_END",
        "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256", "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1",
        "DOWNSTREAM_PEER_CHAIN_SERIALS", "DOWNSTREAM_TLS_VERSION", "DOWNSTREAM_TLS_CIPHER",
        "DOWNSTREAM_TLS_SESSION_ID", "DOWNSTREAM_TRANSPORT_FAILURE_REASON", "DOWNSTREAM_LOCAL_DNS_SAN",
        "UPSTREAM_PEER_URI_SAN", "UPSTREAM_PEER_DNS_SAN", "UPSTREAM_PEER_SUBJECT", "UPSTREAM_PEER_ISSUER",
        "UPSTREAM_PEER_CERT", "UPSTREAM_TLS_VERSION", "UPSTREAM_TLS_CIPHER", "UPSTREAM_TLS_SESSION_ID",
        "UPSTREAM_LOCAL_URI_SAN", "UPSTREAM_LOCAL_DNS_SAN", "UPSTREAM_LOCAL_SUBJECT", "UPSTREAM_FILTER_STATE",
        "UPSTREAM_METADATA", "UPSTREAM_CONNECTION_ID", "STREAM_INFO_REQ",
        "VIRTUAL_CLUSTER_NAME", "DYNAMIC_METADATA", "CLUSTER_METADATA", "UPSTREAM_HOST_METADATA",
        "FILTER_STATE", "FILTER_CHAIN_NAME", "ENVIRONMENT", "EMIT_TIME", "START_TIME_LOCAL", "EMIT_TIME_LOCAL",
        "SYSTEM_TIME", "REQUESTED_SERVER_NAME_WITH_PORT", "COALESCE", "DOWNSTREAM_LOCAL_DNS_SAN",
        "LISTENER_METADATA", "ROUTE_METADATA", "VIRTUAL_HOST_NAME", "VIRTUAL_HOST_METADATA",
        "UPSTREAM_CONNECT_DURATION", "DOWNSTREAM_DIRECT_LOCAL_ADDRESS",
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_DIRECT_LOCAL_PORT",
        "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID", "REQUEST_HEADER_BYTES", "UPSTREAM_EGRESS_ADDRESS",
        "XFCC_HEADER",
    ]
}

/// `X?Y` of `%REQ(X?Y):Z%`: the header, the one read when it is absent, and how many bytes of the value to keep.
/// Envoy reads the first value of a repeated header.
public struct HeaderLookup: Sendable, Equatable {
    public var name: String
    public var alternative: String?
    public var maxLength: Int?
}
