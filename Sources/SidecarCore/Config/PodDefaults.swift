import MeshCapture

/// The zero-config sidecar of a pod (`sidecar --pod-defaults`): Envoy v3 YAML for the ports
/// `sidecar-init` captures to by default, so the two agree without any file.
///
/// - outbound 15001: original destination; HTTP/1.x (http_inspector) through the HTTP connection manager,
///   anything else through tcp_proxy; both to an ORIGINAL_DST cluster, so the connection goes where the
///   app sent it, now seen and counted by the sidecar.
/// - inbound 15006: the same split, delivered to the app on the port the client dialled. With TPROXY the
///   sidecar connects from the client's own address (original_src, mark 1337), so the app sees the real
///   client; with REDIRECT it connects from 127.0.0.6, the passthrough address the rules leave alone.
/// - admin 127.0.0.1:15000; readiness `GET /healthz/ready` on 15021, and the app's rewritten probes
///   (`/app-health/<container>/livez|readyz|startupz`) there too.
///
/// The ports, mark and passthrough address are MeshCapture's `CaptureDefaults` and `InboundPassthrough`,
/// the same values `sidecar-init` (Intercept's `CapturePolicy`) defaults to.
public enum PodDefaults {
    public static let outboundPort = Int(CaptureDefaults.outboundPort)
    public static let inboundPort = Int(CaptureDefaults.inboundPort)
    public static let adminPort = Int(CaptureDefaults.adminPort)
    public static let readinessPort = Int(CaptureDefaults.readinessPort)
    public static let inboundPassthroughSource = InboundPassthrough.ipv4Text
    /// sidecar-init's default `--tproxy-mark`.
    public static let tproxyMark = Int(CaptureDefaults.tproxyMark)

    public enum CaptureMode: String, CaseIterable, Sendable {
        case tproxy, redirect
    }

    /// Mutual TLS between sidecars (`--mtls`).
    ///
    /// - Outbound: connections to a destination in `meshCIDRs` leave through an ORIGINAL_DST cluster that
    ///   originates mTLS with the pod's identity and accepts any peer of the trust domain; HTTP offers ALPN
    ///   http/1.1 so the peer's sidecar picks its HTTP chain, other TCP offers none. Other destinations
    ///   stay plaintext.
    /// - Inbound: TLS connections (tls_inspector) are terminated with the pod's identity and must present a
    ///   certificate of the trust domain. STRICT refuses plaintext (no filter chain matches it);
    ///   PERMISSIVE also keeps the plaintext chains.
    /// - The identity comes from SDS files (written by `writeSecretFiles`) naming `tls.crt`, `tls.key` and
    ///   `ca.crt` in the identity directory, so re-issuing them rotates the certificate without a restart.
    public struct MeshTLS: Sendable {
        public enum Mode: String, CaseIterable, Sendable { case STRICT, PERMISSIVE }
        public var mode: Mode
        /// Where `sidecar certs workload` wrote tls.crt, tls.key and ca.crt.
        public var identityDirectory: String
        /// Where the SDS files naming them go.
        public var secretDirectory: String
        public var trustDomain: String
        /// Destinations that have a sidecar: outbound connections to them originate mTLS.
        public var meshCIDRs: [String]

        public init(mode: Mode, identityDirectory: String, secretDirectory: String, trustDomain: String, meshCIDRs: [String]) {
            self.mode = mode
            self.identityDirectory = identityDirectory
            self.secretDirectory = secretDirectory
            self.trustDomain = trustDomain
            self.meshCIDRs = meshCIDRs
        }

        package var certificateSecretFile: String { "\(secretDirectory)/identity-sds.yaml" }
        package var validationSecretFile: String { "\(secretDirectory)/trust-sds.yaml" }
    }

    /// A control plane for the pod (`--xds-address HOST:PORT`): clusters and listeners over ADS (state of the
    /// world), beside the zero-config listeners, which listeners the plane sends at their addresses replace.
    public struct XDS: Sendable {
        public var host: String
        public var port: Int
        /// The node the plane knows the proxy by (Istio's form by default: `sidecar~IP~POD.NS~NS.svc.cluster.local`).
        public var nodeID: String
        public var nodeCluster: String

        public init(address: String, nodeID: String, nodeCluster: String) throws {
            (host, port) = try PodDefaults.hostPort(address, flag: "--xds-address")
            self.nodeID = nodeID
            self.nodeCluster = nodeCluster
        }

        /// Istio's node id from the pod's downward-API variables (`POD_IP`, `POD_NAME`, `POD_NAMESPACE`), with
        /// `PILOTFISH_NODE_ID` first.
        public static func nodeID(environment: [String: String], hostname: String) -> String {
            if let id = environment["PILOTFISH_NODE_ID"], !id.isEmpty { return id }
            let ns = environment["POD_NAMESPACE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
            let pod = environment["POD_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? hostname
            let ip = environment["POD_IP"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
            return "sidecar~\(ip)~\(pod).\(ns)~\(ns).svc.cluster.local"
        }

        var block: String {
            """
            node: {id: "\(nodeID)", cluster: "\(nodeCluster)"}
            dynamic_resources:
              ads_config:
                api_type: GRPC
                transport_api_version: V3
                grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
              cds_config: {ads: {}, resource_api_version: V3}
              lds_config: {ads: {}, resource_api_version: V3}
            """
        }

        var cluster: String { PodDefaults.cluster("xds_cluster", host: host, port: port, http2: true) }
    }

    /// The listeners the plane's listeners at the same address replace (`Bootstrap.fallbackListeners`).
    public static let fallbackListeners: Set<String> = ["virtual_outbound", "virtual_inbound"]

    /// A cluster of one host (an IP address: STATIC; a name: STRICT_DNS), HTTP/2 when `http2` (gRPC).
    static func cluster(_ name: String, host: String, port: Int, http2: Bool) -> String {
        let isIP = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
        let h2 = http2 ? """

            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                explicit_http_config: {http2_protocol_options: {}}
        """ : ""
        return """
          - name: \(name)
            type: \(isIP ? "STATIC" : "STRICT_DNS")
            connect_timeout: 1s
            load_assignment:
              cluster_name: \(name)
              endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: "\(host)", port_value: \(port)}}}}]}]\(h2)
        """
    }

    /// `HOST:PORT` (an IPv6 address in brackets) as host and port; `flag` names it in the error.
    static func hostPort(_ text: String, flag: String) throws -> (String, Int) {
        var rest = Substring(text)
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
              (1...65535).contains(port)
        else { throw ConfigError(path: flag, line: nil, message: "'\(text)' is not HOST:PORT") }
        rest = rest[..<colon]
        if rest.hasPrefix("[") && rest.hasSuffix("]") { rest = rest.dropFirst().dropLast() }
        guard !rest.isEmpty, rest.allSatisfy({ $0.isLetter || $0.isNumber || ".-:".contains($0) }) else {
            throw ConfigError(path: flag, line: nil, message: "'\(text)' has no valid host")
        }
        return (String(rest), port)
    }

    /// Tracing for both capture listeners' connection managers (`--tracing zipkin|otlp --tracing-collector`):
    /// every request gets a span, exported to `collector` (an IP address and port, or a DNS name and port).
    public struct Tracing: Sendable {
        public enum Provider: String, CaseIterable, Sendable { case zipkin, otlp }
        public var provider: Provider
        public var host: String
        public var port: Int
        /// The OTLP `service.name` (Zipkin spans carry the node's cluster).
        public var serviceName: String

        /// `collector`: `HOST:PORT` (an IPv6 address in brackets).
        public init(provider: Provider, collector: String, serviceName: String) throws {
            (host, port) = try PodDefaults.hostPort(collector, flag: "--tracing-collector")
            self.provider = provider
            self.serviceName = serviceName
        }

        var block: String {
            switch provider {
            case .zipkin:
                return #"{provider: {name: envoy.tracers.zipkin, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: tracing_collector, collector_endpoint: /api/v2/spans, collector_endpoint_version: HTTP_JSON}}}"#
            case .otlp:
                return #"{provider: {name: envoy.tracers.opentelemetry, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig, grpc_service: {envoy_grpc: {cluster_name: tracing_collector}, timeout: 1s}, service_name: "#
                    + "\"\(serviceName)\"}}}"
            }
        }

        var cluster: String { PodDefaults.cluster("tracing_collector", host: host, port: port, http2: provider == .otlp) }
    }

    /// `appProbes`: the app's probes as `sidecar inject` recorded them (`PILOTFISH_APP_PROBES`, a JSON object from
    /// each `/app-health/…` path to its probe): the readiness listener answers those paths by running the probe
    /// against the app (`pilotfish.filters.http.app_probes`).
    public static func yaml(captureMode: CaptureMode, mesh: MeshTLS? = nil, tracing: Tracing? = nil,
                            appProbes: String? = nil, xds: XDS? = nil) -> String {
        let probesFilter = appProbes.map {
            "{name: pilotfish.filters.http.app_probes, typed_config: {\"@type\": type.googleapis.com/pilotfish.filters.http.app_probes.v1.AppProbes, probes: \($0)}}, "
        } ?? ""
        let flags = "--capture-mode \(captureMode.rawValue)" + (mesh.map { " --mtls \($0.mode.rawValue)" } ?? "")
            + (tracing.map { " --tracing \($0.provider.rawValue) --tracing-collector \($0.host):\($0.port)" } ?? "")
            + (xds.map { " --xds-address \($0.host):\($0.port)" } ?? "")
        return """
        # Generated by `sidecar --pod-defaults \(flags)`.
        \(xds?.block ?? "")
        admin:
          address: {socket_address: {address: 127.0.0.1, port_value: \(adminPort)}}
        static_resources:
          listeners:
        \(captureListener(name: "virtual_outbound", port: outboundPort, direction: "outbound", transparent: false, originalSource: false, mesh: mesh, tracing: tracing))
        \(captureListener(name: "virtual_inbound", port: inboundPort, direction: "inbound", transparent: captureMode == .tproxy, originalSource: captureMode == .tproxy, mesh: mesh, tracing: tracing))
          - name: readiness
            address: {socket_address: {address: 0.0.0.0, port_value: \(readinessPort)}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: readiness
                  route_config:
                    virtual_hosts:
                    - name: readiness
                      domains: ["*"]
                      routes:
                      - {match: {path: /healthz/ready}, direct_response: {status: 200}}
                  http_filters: [\(probesFilter){name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          clusters:
          - name: outbound_passthrough
            type: ORIGINAL_DST
            lb_policy: CLUSTER_PROVIDED
            connect_timeout: 10s
        \(downstreamProtocol)
          - name: inbound_passthrough
            type: ORIGINAL_DST
            lb_policy: CLUSTER_PROVIDED
            connect_timeout: 10s
        \(downstreamProtocol)
        \(captureMode == .redirect ? "    upstream_bind_config: {source_address: {address: \(inboundPassthroughSource), port_value: 0}}" : "")
        \(mesh.map { meshClusters($0) } ?? "")
        \(tracing?.cluster ?? "")
        \(xds?.cluster ?? "")
        """
    }

    /// A passthrough cluster speaks the protocol the app spoke: h2c in, h2c out (gRPC), HTTP/1.1 in, HTTP/1.1 out.
    private static let downstreamProtocol = """
            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                use_downstream_protocol_config: {}
        """

    /// The SDS files the mTLS config reads its identity from: the pod's certificate and key, and the mesh CA.
    public static func secretFiles(_ mesh: MeshTLS) -> [(path: String, contents: String)] {
        let d = mesh.identityDirectory
        return [
            (mesh.certificateSecretFile, """
            resources:
            - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
              name: default
              tls_certificate: {certificate_chain: {filename: \(d)/tls.crt}, private_key: {filename: \(d)/tls.key}}

            """),
            (mesh.validationSecretFile, """
            resources:
            - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
              name: ROOTCA
              validation_context: {trusted_ca: {filename: \(d)/ca.crt}}

            """),
        ]
    }

    /// The DownstreamTlsContext / UpstreamTlsContext body shared by both directions.
    private static func commonTLS(_ mesh: MeshTLS, alpn: [String], indent: String) -> String {
        let alpnLine = alpn.isEmpty ? "" : "\n\(indent)alpn_protocols: [\(alpn.map { "\"\($0)\"" }.joined(separator: ", "))]"
        return """
        \(indent)tls_certificate_sds_secret_configs:
        \(indent)- name: default
        \(indent)  sds_config: {path_config_source: {path: \(mesh.certificateSecretFile)}}
        \(indent)combined_validation_context:
        \(indent)  default_validation_context:
        \(indent)    match_typed_subject_alt_names: [{san_type: URI, matcher: {prefix: "spiffe://\(mesh.trustDomain)/"}}]
        \(indent)  validation_context_sds_secret_config:
        \(indent)    name: ROOTCA
        \(indent)    sds_config: {path_config_source: {path: \(mesh.validationSecretFile)}}\(alpnLine)
        """
    }

    /// One cluster per protocol between sidecars: HTTP/1.1 (ALPN http/1.1), HTTP/2 (ALPN h2: the streams of many
    /// gRPC calls share one mTLS connection), and other TCP (no ALPN).
    private static func meshClusters(_ mesh: MeshTLS) -> String {
        let h2 = """

                typed_extension_protocol_options:
                  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                    explicit_http_config: {http2_protocol_options: {}}
            """
        return [("outbound_mtls_http", ["http/1.1"], ""), ("outbound_mtls_h2", ["h2"], h2), ("outbound_mtls_tcp", [], "")]
            .map { name, alpn, options in
            """
              - name: \(name)
                type: ORIGINAL_DST
                lb_policy: CLUSTER_PROVIDED
                connect_timeout: 10s\(options)
                transport_socket:
                  name: envoy.transport_sockets.tls
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                    common_tls_context:
            \(commonTLS(mesh, alpn: alpn, indent: "              "))
            """
        }.joined(separator: "\n")
    }

    private static func httpFilter(direction: String, statPrefix: String, cluster: String, tracing: Tracing?) -> String {
        """
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: \(statPrefix)
                  http_protocol_options: {accept_http_10: true}\(tracing.map { "\n          tracing: \($0.block)" } ?? "")
                  route_config:
                    virtual_hosts:
                    - name: \(direction)
                      domains: ["*"]
                      routes:
                      - {match: {prefix: "/"}, route: {cluster: \(cluster), timeout: 0s}}
                  http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
        """
    }

    private static func tcpFilter(statPrefix: String, cluster: String) -> String {
        """
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: \(statPrefix)
                  cluster: \(cluster)
        """
    }

    private static func inboundTLS(_ mesh: MeshTLS, alpn: [String]) -> String {
        """
              transport_socket:
                name: envoy.transport_sockets.tls
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
                  require_client_certificate: true
                  common_tls_context:
        \(commonTLS(mesh, alpn: alpn, indent: "            "))
        """
    }

    private static func captureListener(name: String, port: Int, direction: String, transparent: Bool, originalSource: Bool,
                                        mesh: MeshTLS?, tracing: Tracing?) -> String {
        let originalSrc = originalSource ? """

                - name: envoy.filters.listener.original_src
                  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc, mark: \(tproxyMark)}
            """ : ""
        let tlsInspector = mesh != nil && direction == "inbound" ? """

                - name: envoy.filters.listener.tls_inspector
                  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
            """ : ""
        let http = "\(direction)_http", tcp = "\(direction)_tcp", passthrough = "\(direction)_passthrough"
        var chains: [String] = []
        var defaultChain: String? = """
            default_filter_chain:
              filters:
        \(tcpFilter(statPrefix: tcp, cluster: passthrough))
        """
        let plainHTTP = """
            - filter_chain_match: {\(mesh != nil && direction == "inbound" ? "transport_protocol: raw_buffer, " : "")application_protocols: ["http/1.1", "http/1.0", "h2c"]}
              filters:
        \(httpFilter(direction: direction, statPrefix: http, cluster: passthrough, tracing: tracing))
        """
        switch (mesh, direction) {
        case (let mesh?, "outbound") where !mesh.meshCIDRs.isEmpty:
            let ranges = mesh.meshCIDRs.map { cidr -> String in
                let parts = cidr.split(separator: "/")
                return "{address_prefix: \(parts[0]), prefix_len: \(parts.count > 1 ? String(parts[1]) : (cidr.contains(":") ? "128" : "32"))}"
            }.joined(separator: ", ")
            chains.append("""
                - filter_chain_match: {prefix_ranges: [\(ranges)], application_protocols: ["http/1.1", "http/1.0"]}
                  filters:
            \(httpFilter(direction: direction, statPrefix: "outbound_mtls_http", cluster: "outbound_mtls_http", tracing: tracing))
            """)
            chains.append("""
                - filter_chain_match: {prefix_ranges: [\(ranges)], application_protocols: ["h2c"]}
                  filters:
            \(httpFilter(direction: direction, statPrefix: "outbound_mtls_http", cluster: "outbound_mtls_h2", tracing: tracing))
            """)
            chains.append("""
                - filter_chain_match: {prefix_ranges: [\(ranges)]}
                  filters:
            \(tcpFilter(statPrefix: "outbound_mtls_tcp", cluster: "outbound_mtls_tcp"))
            """)
            chains.append(plainHTTP)
        case (let mesh?, "inbound"):
            chains.append("""
                - filter_chain_match: {transport_protocol: tls, application_protocols: ["h2"]}
            \(inboundTLS(mesh, alpn: ["h2"]))
                  filters:
            \(httpFilter(direction: direction, statPrefix: "inbound_mtls_http", cluster: passthrough, tracing: tracing))
            """)
            chains.append("""
                - filter_chain_match: {transport_protocol: tls, application_protocols: ["http/1.1"]}
            \(inboundTLS(mesh, alpn: ["http/1.1"]))
                  filters:
            \(httpFilter(direction: direction, statPrefix: "inbound_mtls_http", cluster: passthrough, tracing: tracing))
            """)
            chains.append("""
                - filter_chain_match: {transport_protocol: tls}
            \(inboundTLS(mesh, alpn: []))
                  filters:
            \(tcpFilter(statPrefix: "inbound_mtls_tcp", cluster: passthrough))
            """)
            if mesh.mode == .PERMISSIVE {
                chains.append(plainHTTP)
                chains.append("""
                    - filter_chain_match: {transport_protocol: raw_buffer}
                      filters:
                \(tcpFilter(statPrefix: tcp, cluster: passthrough))
                """)
            }
            // STRICT: plaintext matches no chain and is refused (listener no_filter_chain_match).
            defaultChain = nil
        default:
            chains.append(plainHTTP)
        }
        return """
          - name: \(name)
            address: {socket_address: {address: 0.0.0.0, port_value: \(port)}}
            transparent: \(transparent)
            traffic_direction: \(direction.uppercased())
            listener_filters:
            - name: envoy.filters.listener.original_dst
              typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}\(tlsInspector)
            - name: envoy.filters.listener.http_inspector
              typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector}\(originalSrc)
            # Server-first protocols send nothing: give them the TCP chain instead of closing them.
            listener_filters_timeout: 1s
            continue_on_listener_filters_timeout: true
            filter_chains:
        \(chains.joined(separator: "\n"))
        \(defaultChain ?? "")
        """
    }
}
