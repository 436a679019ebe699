import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Testing
import X509

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `authenticated` principals through the real proxy: mTLS listeners, client certificates carrying SPIFFE IDs,
/// with the answers Envoy 1.40 gives for the same configs.
@Suite(.serialized) struct RBACMutualTLSTests {
    static let frontend = "spiffe://cluster.local/ns/default/sa/frontend"
    static let batch = "spiffe://cluster.local/ns/jobs/sa/batch"

    /// A CA, a server identity and two client identities, valid around now, as PEM files in a temp dir.
    final class PKI {
        let dir: String
        let ca: (cert: Certificate, key: P256.Signing.PrivateKey)
        let clients: [String: (cert: Certificate, key: P256.Signing.PrivateKey)]

        init() throws {
            dir = NSTemporaryDirectory() + "pf-rbac-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let caKey = P256.Signing.PrivateKey()
            let caName = try DistinguishedName { CommonName("rbac-test-ca") }
            let caCert = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
                notValidBefore: Date() - 3600, notValidAfter: Date() + 3600, issuer: caName, subject: caName,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                },
                issuerPrivateKey: .init(caKey))
            ca = (caCert, caKey)
            func leaf(_ names: [GeneralName], _ cn: String) throws -> (Certificate, P256.Signing.PrivateKey) {
                let key = P256.Signing.PrivateKey()
                let cert = try Certificate(
                    version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                    notValidBefore: Date() - 3600, notValidAfter: Date() + 3600, issuer: caName,
                    subject: try DistinguishedName { CommonName(cn) }, signatureAlgorithm: .ecdsaWithSHA256,
                    extensions: try Certificate.Extensions {
                        Critical(BasicConstraints.notCertificateAuthority)
                        SubjectAlternativeNames(names)
                    },
                    issuerPrivateKey: .init(caKey))
                return (cert, key)
            }
            let server = try leaf([.dnsName("localhost")], "server")
            clients = [
                "frontend": try leaf([.uniformResourceIdentifier(RBACMutualTLSTests.frontend)], "frontend"),
                "batch": try leaf([.uniformResourceIdentifier(RBACMutualTLSTests.batch)], "batch"),
            ]
            try write("ca.crt", try caCert.serializeAsPEM().pemString)
            try write("server.crt", try server.0.serializeAsPEM().pemString)
            try write("server.key", server.1.pemRepresentation)
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }

        private func write(_ name: String, _ text: String) throws {
            try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
        }

        var transportSocket: String {
            """
                - transport_socket:
                    name: envoy.transport_sockets.tls
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
                      common_tls_context:
                        tls_certificates: [{certificate_chain: {filename: \(dir)/server.crt}, private_key: {filename: \(dir)/server.key}}]
                        validation_context: {trusted_ca: {filename: \(dir)/ca.crt}}
            """
        }
    }

    /// One TLS connection presenting `client`'s certificate (nil: none): sends `bytes`, collects what comes back
    /// until the proxy closes or `until` bytes arrived, then reports them and any error (an unclean TLS
    /// shutdown shows up here).
    static func exchange(port: Int, pki: PKI, client: String?, sending bytes: String, until: Int = .max) throws
        -> (received: String, error: String?)
    {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        if let client, let identity = pki.clients[client] {
            var der = DER.Serializer()
            try der.serialize(identity.cert)
            tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: der.serializedBytes, format: .der))]
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.key.pemRepresentation.utf8),
                                                              format: .pem))
        }
        let context = try NIOSSLContext(configuration: tls)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let collector = Collector(until: until)
        let channel = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
        channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        // A refused client may be closed before its write completes; what it received is what counts.
        try? channel.writeAndFlush(ByteBuffer(string: bytes)).wait()
        try? channel.closeFuture.wait()
        return collector.state.withLockedValue { (String(decoding: $0.bytes, as: UTF8.self), $0.error) }
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let until: Int
        let state = NIOLockedValueBox((bytes: [UInt8](), error: String?.none))
        init(until: Int) { self.until = until }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            let count = state.withLockedValue {
                $0.bytes += buffer.readableBytesView
                return $0.bytes.count
            }
            if count >= until { context.close(promise: nil) }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            state.withLockedValue { $0.error = $0.error ?? "\(error)" }
            context.close(promise: nil)
        }
    }

    @Test func httpAllowListOfSpiffeIDs() throws {
        let pki = try PKI()
        let yaml = """
            admin:
              address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            static_resources:
              listeners:
              - name: mtls
                address: {socket_address: {address: 127.0.0.1, port_value: 0}}
                filter_chains:
            \(pki.transportSocket)
                  filters:
                  - name: envoy.filters.network.http_connection_manager
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                      stat_prefix: inbound
                      route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200, body: {inline_string: ok}}}]}]}
                      http_filters:
                      - name: envoy.filters.http.rbac
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
                          rules: {policies: {frontend: {permissions: [{any: true}], principals: [{authenticated: {principal_name: {exact: "\(Self.frontend)"}}}]}}}
                      - name: envoy.filters.http.router
                        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
            """
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let request = "GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
        let allowed = try Self.exchange(port: proxy.port, pki: pki, client: "frontend", sending: request)
        #expect(allowed.received.hasPrefix("HTTP/1.1 200 OK"))
        #expect(allowed.received.hasSuffix("\r\n\r\nok"))
        for client in ["batch", nil] {
            let denied = try Self.exchange(port: proxy.port, pki: pki, client: client, sending: request)
            #expect(denied.received.hasPrefix("HTTP/1.1 403 Forbidden"), "\(client ?? "no certificate")")
            #expect(denied.received.hasSuffix("\r\n\r\nRBAC: access denied"))
        }
        #expect(try proxy.stat("http.inbound.rbac.allowed") == 1)
        #expect(try proxy.stat("http.inbound.rbac.denied") == 2)
    }

    @Test func networkRBACRefusesOtherIdentitiesWithACleanTLSClose() throws {
        let pki = try PKI()
        let echo = try EchoServer()
        defer { echo.stop() }
        let yaml = """
            admin:
              address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            static_resources:
              listeners:
              - name: mtls
                address: {socket_address: {address: 127.0.0.1, port_value: 0}}
                filter_chains:
            \(pki.transportSocket)
                  filters:
                  - name: envoy.filters.network.rbac
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
                      stat_prefix: mtls
                      rules: {policies: {frontend: {permissions: [{any: true}], principals: [{authenticated: {principal_name: {prefix: "spiffe://cluster.local/ns/default/"}}}]}}}
                  - name: envoy.filters.network.tcp_proxy
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: echo, cluster: echo}
              clusters:
              - {name: echo, connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: echo, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(echo.port)}}}}]}]}}
            """
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let allowed = try Self.exchange(port: proxy.port, pki: pki, client: "frontend", sending: "hello", until: 5)
        #expect(allowed.received == "hello")
        // Envoy 1.40 answers a refused TLS client with close_notify and FIN: no bytes, no unclean shutdown.
        let refused = try Self.exchange(port: proxy.port, pki: pki, client: "batch", sending: "hello")
        #expect(refused.received.isEmpty)
        #expect(refused.error == nil, "\(refused.error ?? "")")
        #expect(try proxy.stat("mtls.rbac.allowed") == 1)
        #expect(try proxy.stat("mtls.rbac.denied") == 1)
        #expect(try proxy.stat("cluster.echo.upstream_cx_total") == 1)
    }
}
