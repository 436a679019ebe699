import Testing
@testable import Sidecar
@testable import SidecarCore

/// `ads_config` and `ads: {}` in a bootstrap: what is taken, and what is refused with a reason.
struct ADSConfigTests {
    static func bootstrap(ads: String = "", cds: String = "{ads: {}, resource_api_version: V3}",
                          xds: String = "http2: true") -> String {
        let options = xds.contains("http2: true") ? """
                typed_extension_protocol_options:
                  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                    explicit_http_config: {http2_protocol_options: {}}
            """ : ""
        return """
            node: {id: n, cluster: c}
            dynamic_resources:
              ads_config:
                api_type: GRPC
                transport_api_version: V3
                grpc_services: [{envoy_grpc: {cluster_name: xds}}]\(ads)
              cds_config: \(cds)
            static_resources:
              clusters:
              - name: xds
                type: STATIC
                connect_timeout: 1s
            \(options)
                load_assignment:
                  cluster_name: xds
                  endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
            """
    }

    @Test func anADSBootstrapIsTaken() throws {
        let b = try Bootstrap.load(text: Self.bootstrap(ads: "\n    set_node_on_first_message_only: true",
                                                        cds: "{ads: {}, initial_fetch_timeout: 3s}"))
        #expect(b.dynamicResources?.ads == ADSConfig(clusterName: "xds", nodeOnFirstMessageOnly: true))
        #expect(b.dynamicResources?.clusters == .ads)
        #expect(b.dynamicResources?.initialFetchTimeout == .seconds(3))
        let delta = try Bootstrap.load(text: Self.bootstrap().replacingOccurrences(of: "api_type: GRPC",
                                                                                   with: "api_type: DELTA_GRPC"))
        #expect(delta.dynamicResources?.ads?.delta == true)
    }

    @Test func whatIsNotThereYetIsRefusedByName() {
        func error(_ yaml: String) -> String {
            do { _ = try Bootstrap.load(text: yaml); return "" } catch { return "\(error)" }
        }
        #expect(error(Self.bootstrap().replacingOccurrences(of: "api_type: GRPC", with: "api_type: REST"))
            .contains("api_type must be GRPC or DELTA_GRPC, not 'REST'"))
        #expect(error(Self.bootstrap(xds: "")).contains("must speak HTTP/2"))
        #expect(error(Self.bootstrap().replacingOccurrences(of: "cluster_name: xds}", with: "cluster_name: nope}"))
            .contains("unknown static cluster 'nope'"))
        #expect(error(Self.bootstrap(cds: "{api_config_source: {api_type: GRPC}}"))
            .contains("api_config_source"))
        // `ads: {}` without an ads_config.
        let noADS = Self.bootstrap().replacingOccurrences(
            of: "  ads_config:\n    api_type: GRPC\n    transport_api_version: V3\n    grpc_services: [{envoy_grpc: {cluster_name: xds}}]\n",
            with: "")
        #expect(error(noADS).contains("'ads: {}' needs dynamic_resources.ads_config"))
    }

    /// TLS to the control plane: files or inline PEM and trusted_ca are taken; what the gRPC transport cannot do
    /// as Envoy does is refused, naming the ADS cluster field.
    @Test func theADSClusterTakesTLSWithFilesAndACA() throws {
        func withTLS(_ context: String) -> String {
            Self.bootstrap().replacingOccurrences(of: "    load_assignment:\n      cluster_name: xds", with: """
                    transport_socket:
                      name: envoy.transport_sockets.tls
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                        sni: plane.example.test
                        common_tls_context: \(context)
                    load_assignment:
                      cluster_name: xds
                """)
        }
        func error(_ yaml: String) -> String {
            do { _ = try Bootstrap.load(text: yaml); return "" } catch { return "\(error)" }
        }
        let files = "{tls_certificates: [{certificate_chain: {filename: /c.pem}, private_key: {filename: /k.pem}}]"
        let b = try Bootstrap.load(text: withTLS(files + ", validation_context: {trusted_ca: {filename: /ca.pem}}}"))
        #expect(b.clusters.first?.tls?.sni == "plane.example.test")
        let san = error(withTLS(files + ", validation_context: {trusted_ca: {filename: /ca.pem}, "
            + "match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: plane}}]}}"))
        #expect(san.contains("grpc_services[0].envoy_grpc.cluster_name"))
        #expect(san.contains("matches the server's subject alt names: not supported by Pilotfish"))
        let params = error(withTLS(files + ", tls_params: {tls_minimum_protocol_version: TLSv1_3}}"))
        #expect(params.contains("sets tls_params"))
    }
}
