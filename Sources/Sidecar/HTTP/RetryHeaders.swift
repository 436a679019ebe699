import NIOCore
import NIOHTTP1

/// The `x-envoy-*` request headers that steer retries and timeouts. Envoy honours them only on requests it
/// considers internal (`ConnectionManagerUtility::mutateRequestHeaders`), and since 1.36 no address is
/// internal unless `internal_address_config` lists it (checked on Envoy 1.40: with default settings the
/// headers are ignored whatever `x-forwarded-for` says). Pilotfish does not support `internal_address_config`,
/// so every request is external: these headers are removed before the request is forwarded
/// (`cleanInternalHeaders`), and a client cannot make the mesh retry on its behalf.
enum RetryHeaders {
    static let names = [
        "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-retriable-status-codes",
        "x-envoy-retriable-header-names", "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms", "x-envoy-hedge-on-per-try-timeout",
    ]

    static func strip(_ headers: inout HTTPHeaders) {
        for n in names where headers.contains(name: n) { headers.remove(name: n) }
    }
}
