/// `envoy.config.core.v3.Http2ProtocolOptions`, downstream (the connection manager's `http2_protocol_options`) and
/// upstream (a cluster's `explicit_http_config.http2_protocol_options`).
///
/// The window defaults are not Envoy's. Envoy advertises 256 MiB windows and bounds what it buffers with its own
/// per-stream watermarks; here the window is the bound (a stream that is not read keeps at most its window), so it
/// defaults to `per_connection_buffer_limit_bytes`' default, 1 MiB, and a larger window must be asked for.
public struct HTTP2ProtocolOptions: Sendable, Equatable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised downstream; upstream, the streams one connection carries before
    /// the pool opens another (Envoy's default: 2147483647).
    public var maxConcurrentStreams: Int = 2_147_483_647
    /// SETTINGS_INITIAL_WINDOW_SIZE, and the stream's receive window.
    public var initialStreamWindowSize: Int = 1 << 20
    /// The connection's receive window.
    public var initialConnectionWindowSize: Int = 1 << 20
    /// SETTINGS_HEADER_TABLE_SIZE (Envoy's default 4096).
    public var hpackTableSize: Int = 4096
    /// `max_consecutive_inbound_frames_with_empty_payload` (Envoy's default 1): more empty DATA frames in a row is a
    /// flood and ends the connection.
    public var maxConsecutiveEmptyFrames: Int = 1
    /// `max_outbound_control_frames` (Envoy's default 1000): control frames (PING/SETTINGS acks, RST_STREAM) queued
    /// for a peer that does not read; past it the connection ends.
    public var maxOutboundControlFrames: Int = 1000
    /// `allow_connect`: SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised, so clients may send extended CONNECT
    /// (RFC 8441: WebSocket and other upgrades over a stream). A plain CONNECT needs no setting.
    public var allowConnect = false

    public init() {}
}

extension HTTP2ProtocolOptions {
    /// Fields Envoy has that Pilotfish does not implement: each is refused by name.
    static let unsupportedFields = [
        "allow_metadata", "max_outbound_frames", "max_inbound_priority_frames_per_stream",
        "max_inbound_window_update_frames_per_data_frame_sent", "stream_error_on_invalid_http_messaging",
        "override_stream_error_on_invalid_http_message", "custom_settings_parameters", "connection_keepalive",
        "use_oghttp2_codec", "max_metadata_size", "enable_huffman_encoding",
    ]

    /// `upstream`: a cluster's options, where `allow_connect: true` (extended CONNECT sent upstream) is refused.
    package static func decode(_ value: ConfigValue, upstream: Bool = false) throws -> HTTP2ProtocolOptions {
        let obj = try value.object()
        try obj.unsupported(unsupportedFields)
        var o = HTTP2ProtocolOptions()
        if let v = obj.optional("hpack_table_size") { o.hpackTableSize = Int(try v.uint32()) }
        // Envoy's bounds (protoc-gen-validate rules of Http2ProtocolOptions).
        if let v = obj.optional("max_concurrent_streams") {
            o.maxConcurrentStreams = Int(try v.int(min: 1, max: 2_147_483_647))
        }
        if let v = obj.optional("initial_stream_window_size") {
            o.initialStreamWindowSize = Int(try v.int(min: 65535, max: 2_147_483_647))
        }
        if let v = obj.optional("initial_connection_window_size") {
            o.initialConnectionWindowSize = Int(try v.int(min: 65535, max: 2_147_483_647))
        }
        if let v = obj.optional("allow_connect") {
            o.allowConnect = try v.bool()
            if o.allowConnect && upstream {
                throw v.error("allow_connect: true on a cluster (upgrades sent upstream as extended CONNECT) is a valid Envoy setting but is not supported by Pilotfish yet")
            }
        }
        if let v = obj.optional("max_consecutive_inbound_frames_with_empty_payload") {
            o.maxConsecutiveEmptyFrames = Int(try v.uint32())
        }
        if let v = obj.optional("max_outbound_control_frames") {
            o.maxOutboundControlFrames = Int(try v.int(min: 1, max: Int64(UInt32.max)))
        }
        try obj.finish()
        return o
    }
}
