import NIOCore
import NIOPosix
import Sidecar
import SidecarCore

/// The whole proxy in this process, on loopback, started once: a listener with codec AUTO (HTTP/1.1 and h2c),
/// path normalisation, the fault, CORS, CSRF, local rate limit and compressor filters, routes that forward (with
/// retries and rewrites), redirect, answer directly or upgrade, and a `FuzzBackend` behind them. Each input is
/// one downstream connection (`FuzzClient`).
final class ProxyFuzz: @unchecked Sendable {
    static let shared = ProxyFuzz()

    private let backendGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let backend: FuzzBackend
    let server: SidecarServer
    let port: Int

    private init() {
        // A warning per malformed input would be most of the output.
        Log.level = .error
        do {
            backend = try FuzzBackend(group: backendGroup)
            let bootstrap = try Bootstrap.load(text: Self.config(backendPort: backend.port))
            server = SidecarServer(bootstrap: bootstrap, concurrency: 1, drainTime: .milliseconds(10))
            try server.start()
        } catch {
            fatalError("the fuzz proxy does not start: \(error)")
        }
        port = server.listenerAddresses.first?.port ?? 0
    }

    /// The input is the downstream's bytes as they are: request heads, bodies, pipelined requests.
    @discardableResult
    func runHTTP1(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        FuzzClient.exchange(port: port, prefix: [], input: input)
    }

    /// The input follows the client preface and an empty SETTINGS frame, so it starts at the first frame the
    /// client chooses.
    @discardableResult
    func runHTTP2(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        FuzzClient.exchange(port: port, prefix: Self.h2Preface, input: input)
    }

    static let h2Preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]

    static func config(backendPort: Int) -> String {
        """
        static_resources:
          listeners:
          - name: fuzz
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: fuzz
                  codec_type: AUTO
                  normalize_path: true
                  merge_slashes: true
                  path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD
                  request_headers_timeout: 2s
                  stream_idle_timeout: 2s
                  upgrade_configs: [{upgrade_type: websocket}]
                  http2_protocol_options: {max_concurrent_streams: 64}
                  route_config:
                    name: fuzz
                    virtual_hosts:
                    - name: fuzz
                      domains: ["*"]
                      typed_per_filter_config:
                        envoy.filters.http.cors:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                          allow_origin_string_match: [{exact: "http://allowed.example"}]
                          allow_methods: "GET, POST"
                          allow_headers: "x-custom"
                          max_age: "600"
                      routes:
                      - match: {prefix: "/direct"}
                        direct_response: {status: 200, body: {inline_string: "direct"}}
                      - match: {prefix: "/redirect"}
                        redirect: {prefix_rewrite: "/moved", response_code: FOUND}
                      - match: {prefix: "/rewrite"}
                        route: {cluster: backend, prefix_rewrite: "/", timeout: 2s}
                      - match: {prefix: "/"}
                        route:
                          cluster: backend
                          timeout: 2s
                          retry_policy: {retry_on: "5xx,reset,connect-failure", num_retries: 1}
                  http_filters:
                  - name: envoy.filters.http.fault
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                      abort: {header_abort: {}, percentage: {numerator: 100}}
                      delay: {header_delay: {}, percentage: {numerator: 100}}
                      max_active_faults: 8
                  - name: envoy.filters.http.cors
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
                  - name: envoy.filters.http.csrf
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy
                      filter_enabled: {default_value: {numerator: 100}}
                  - name: envoy.filters.http.local_ratelimit
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                      stat_prefix: fuzz
                      token_bucket: {max_tokens: 1000000, tokens_per_fill: 1000000, fill_interval: 1s}
                      filter_enabled: {default_value: {numerator: 100}}
                      filter_enforced: {default_value: {numerator: 100}}
                  - name: envoy.filters.http.compressor
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
                      compressor_library:
                        name: gzip
                        typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip}
                      response_direction_config: {common_config: {min_content_length: 1}}
                  - name: envoy.filters.http.router
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          clusters:
          - name: backend
            connect_timeout: 1s
            type: STATIC
            load_assignment:
              cluster_name: backend
              endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(backendPort)}}}}]}]
        """
    }
}
