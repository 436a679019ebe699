import Foundation
import Testing
import X509

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// SDS from control planes: `sds_config` sources, inline_bytes data sources, and `SecretDiscovery`'s check-then-swap
/// of the TLS contexts that name a secret. The proxy on real sockets is exercised by scripts/e2e-xds (sds-* scenarios,
/// checked against Envoy 1.40).
@Suite struct SecretDiscoveryTests {
    let pki = ValidatorTestPKI()

    /// A bootstrap with an ADS stream and a static cluster for streams, one TLS listener whose certificate is the
    /// secret `cert` from `source` (YAML flow text).
    func bootstrap(_ source: String, ads: Bool = true) -> String {
        """
        node: {id: n, cluster: c}
        \(ads ? "dynamic_resources: {ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}" : "")
        static_resources:
          clusters:
          - name: xds
            type: STATIC
            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                explicit_http_config: {http2_protocol_options: {}}
            load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]}
          listeners:
          - name: tls
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            filter_chains:
            - transport_socket:
                name: envoy.transport_sockets.tls
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
                  common_tls_context:
                    tls_certificate_sds_secret_configs: [{name: cert, sds_config: \(source)}]
              filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: in
                  route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]}
                  http_filters: [{name: envoy.filters.http.router}]
        """
    }

    func secretSource(_ source: String, ads: Bool = true) throws -> ConfigSource {
        let b = try Bootstrap.load(text: bootstrap(source, ads: ads))
        let tls = try #require(b.listeners[0].filterChains[0].tls)
        guard case .sds(let ref) = tls.certificates else { Issue.record("not an SDS certificate"); return .ads }
        #expect(ref.name == "cert")
        return ref.source
    }

    func refusal(_ source: String, ads: Bool = true) -> String {
        do {
            _ = try Bootstrap.load(text: bootstrap(source, ads: ads))
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func secretsComeFromFilesTheADSStreamOrAStreamOfTheirOwn() throws {
        #expect(try secretSource("{ads: {}, resource_api_version: V3}") == .ads)
        let stream = try secretSource(
            "{api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}")
        #expect(stream == .grpc(ADSConfig(clusterName: "xds")))
        #expect(try secretSource("{path_config_source: {path: /etc/sds.yaml}}", ads: false)
            == .file(FileConfigSource(path: "/etc/sds.yaml")))
    }

    @Test func aSecretSourceWithoutItsStreamIsRefusedWhereItIsNamed() {
        let noADS = refusal("{ads: {}}", ads: false)
        #expect(noADS.contains("'ads: {}' needs dynamic_resources.ads_config"), "\(noADS)")
        #expect(noADS.contains("static_resources.listeners[0].filter_chains[0].transport_socket"), "\(noADS)")
        let unknown = refusal(
            "{api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: nowhere}}]}}")
        #expect(unknown.contains("unknown static cluster 'nowhere'"), "\(unknown)")
    }

    @Test func inlineBytesAreBase64PEM() throws {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        let encoded = Data(pem.utf8).base64EncodedString()
        let value = try ConfigValue(node: #require(try ConfigDocument.parse("{inline_bytes: \"\(encoded)\"}")), path: "trusted_ca")
        #expect(try DataSourceConfig.decode(value) == .inline(pem))
        let bad = try ConfigValue(node: #require(try ConfigDocument.parse("{inline_bytes: \"not base64!\"}")), path: "trusted_ca")
        #expect(throws: ConfigError.self) { try DataSourceConfig.decode(bad) }
    }

    /// A certificate secret: the chain and key inline.
    func certificate(_ issued: ValidatorTestPKI.Issued, key: String? = nil) throws -> SecretFile.Secret {
        .certificate(TLSCertificateConfig(certificateChain: .inline(try issued.cert.serializeAsPEM().pemString),
                                          privateKey: .inline(key ?? issued.key.pemRepresentation)))
    }

    func response(_ version: String, _ secrets: [(String, SecretFile.Secret)]) -> DiscoveryFile<SecretResource> {
        DiscoveryFile(versionInfo: version, resources: secrets.map { SecretResource(name: $0.0, secret: $0.1) },
                      documents: secrets.map { _ in "{}" })
    }

    func counter(_ registry: StatsRegistry, _ name: String) -> Int {
        guard let slot = registry.slot(named: name) else { return -1 }
        return registry.resolvingComputed(Array(repeating: 0, count: registry.count))[slot]
    }

    @Test func anUpdateIsCheckedAgainstEveryContextNamingItThenSwappedIn() throws {
        let root = try pki.ca("root")
        let first = try pki.leaf("spiffe://td/ns/a/sa/a", issuer: root)
        let second = try pki.leaf("spiffe://td/ns/a/sa/a", issuer: root)
        let registry = StatsRegistry()
        let discovery = SecretDiscovery(registry: registry)
        let ref = SDSSecretReference(name: "cert", source: .ads)
        let provider = TLSContextProvider(
            config: TLSContextConfig(side: .downstream, certificates: .sds(ref), validation: nil), owner: "listener 'l'")
        // Not arrived: the context cannot be built, and is not ready.
        #expect(throws: TLSMaterial.SecretNotReady.self) { try provider.load(secrets: discovery.secrets) }
        #expect(provider.readySnapshot == nil)

        var result = discovery.apply(.success(response("1", [("cert", try certificate(first))])), from: .ads,
                                     wanted: [ref], providers: [provider])
        #expect(result.refused == nil && result.changed)
        #expect(provider.readySnapshot?.certificateSerial == "\(first.cert.serialNumber)")
        #expect(discovery.active[ref]?.versionInfo == "1")

        // A key that does not belong to the certificate: refused, naming the context; nothing changes.
        result = discovery.apply(.success(response("2", [("cert", try certificate(second, key: first.key.pemRepresentation))])),
                                 from: .ads, wanted: [ref], providers: [provider])
        #expect(result.refused?.contains("listener 'l'") == true, "\(result.refused ?? "accepted")")
        #expect(result.refused?.contains("does not match") == true, "\(result.refused ?? "accepted")")
        #expect(provider.readySnapshot?.certificateSerial == "\(first.cert.serialNumber)")
        #expect(discovery.active[ref]?.versionInfo == "1")

        // The same name from another source, or a name no context wants, is not this context's secret.
        result = discovery.apply(.success(response("3", [("cert", try certificate(second))])),
                                 from: .grpc(ADSConfig(clusterName: "xds")), wanted: [ref], providers: [provider])
        #expect(result.refused == nil && !result.changed)
        result = discovery.apply(.success(response("3", [("other", try certificate(second))])), from: .ads,
                                 wanted: [ref], providers: [provider])
        #expect(result.refused == nil && !result.changed)
        #expect(provider.readySnapshot?.certificateSerial == "\(first.cert.serialNumber)")

        // A good rotation: the next handshakes get the new certificate.
        result = discovery.apply(.success(response("4", [("cert", try certificate(second))])), from: .ads,
                                 wanted: [ref], providers: [provider])
        #expect(result.refused == nil && result.changed)
        #expect(provider.readySnapshot?.certificateSerial == "\(second.cert.serialNumber)")
        // Sent again unchanged: accepted, nothing rebuilt.
        let loads = provider.loads.value
        result = discovery.apply(.success(response("5", [("cert", try certificate(second))])), from: .ads,
                                 wanted: [ref], providers: [provider])
        #expect(result.refused == nil && !result.changed && provider.loads.value == loads)
        #expect(counter(registry, "sds.cert.update_success") == 3)
        #expect(counter(registry, "sds.cert.update_rejected") == 1)
    }

    @Test func aContextWaitingForTwoSecretsIsBuiltWhenTheSecondArrives() throws {
        let root = try pki.ca("root")
        let leaf = try pki.leaf("spiffe://td/ns/a/sa/a", issuer: root)
        let discovery = SecretDiscovery(registry: StatsRegistry())
        let cert = SDSSecretReference(name: "cert", source: .ads), ca = SDSSecretReference(name: "ca", source: .ads)
        let provider = TLSContextProvider(
            config: TLSContextConfig(side: .upstream, certificates: .sds(cert),
                                     validation: .sds(ca, defaults: CertificateValidationConfig())),
            owner: "cluster 'c'")
        var result = discovery.apply(.success(response("1", [("cert", try certificate(leaf))])), from: .ads,
                                     wanted: [cert, ca], providers: [provider])
        #expect(result.refused == nil && result.changed)
        #expect(provider.readySnapshot == nil)
        let trust = SecretFile.Secret.validation(CertificateValidationConfig(trustedCA: .inline(try root.cert.serializeAsPEM().pemString)))
        result = discovery.apply(.success(response("1", [("ca", trust)])), from: .ads, wanted: [cert, ca],
                                 providers: [provider])
        #expect(result.refused == nil && result.changed)
        #expect(provider.readySnapshot?.validator != nil)
    }
}
