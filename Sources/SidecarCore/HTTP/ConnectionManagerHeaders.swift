/// The connection manager's header settings (the rules live with the HTTP layer, in
/// `ConnectionManagerHeaders+Mutation.swift`). What the connection manager does to every request's headers before any HTTP filter sees them, and to every
/// response's after the last encoder: Envoy's `ConnectionManagerUtility::mutateRequestHeaders` /
/// `mutateResponseHeaders`, with Envoy 1.40's behaviour as observed (no `internal_address_config`, so no request is
/// internal):
///
/// - `x-envoy-internal`, `x-envoy-ip-tags` and `x-envoy-force-trace` never reach the upstream from a client;
/// - `use_remote_address: true`: the peer is appended to `x-forwarded-for` (a loopback peer as the host's own
///   address, as Envoy does) unless `skip_xff_append`; `x-envoy-external-address` is the peer; the headers a client
///   must not set (`x-envoy-decorator-operation`, `x-envoy-downstream-service-cluster`/`-node`,
///   `x-envoy-original-path`) are removed; a client's `x-request-id` is replaced unless
///   `preserve_external_request_id`;
/// - `add_user_agent`: `x-envoy-downstream-service-cluster` (and `user-agent` when absent) is the node's cluster,
///   `x-envoy-downstream-service-node` its id;
/// - `generate_request_id` (default on): an `x-request-id` when there is none;
/// - `via`: appended to the request's and the response's `via`.
package struct ConnectionManagerHeaders: Sendable {
    package var useRemoteAddress = false
    package var skipXFFAppend = false
    package var xffNumTrustedHops = 0
    package var generateRequestID = true
    package var preserveExternalRequestID = false
    package var alwaysSetRequestIDInResponse = false
    /// `add_user_agent`: the node's cluster (nil: off).
    package var userAgent: String?
    package var nodeID = ""
    package var via: String?
    /// What a loopback peer is appended to `x-forwarded-for` as: Envoy's local address (the host's first
    /// non-loopback address).
    package var localAddress = "127.0.0.1"

    package init() {}
}
