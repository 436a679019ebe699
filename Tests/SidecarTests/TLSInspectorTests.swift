import Foundation
import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

@Suite struct TLSInspectorTests {
    /// The first flight of `openssl s_client -servername api.Example.com -alpn h2,http/1.1` (OpenSSL 3.0).
    static let opensslClientHello = hex("160301014e0100014a03034925b4bb23610d2aec4919b9ea36f97bbc09de41288a0dbaea12c6cc04d63b5e20cea976e4009c62de54a31989f0555f492fbbe104c4d399cda7f954712ed1a6c9003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000c300000014001200000f6170692e4578616d706c652e636f6d000b000403000102000a00160014001d0017001e0019001801000101010201030104002300000010000e000c02683208687474702f312e310016000000170000000d002a0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d0020eb10dd997d64ebcbd35ad65ad3bc2b720fc7a6ca7f4be3c657d1ac42c3810203")

    static func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    @Test func readsSNIAndALPNFromARealClientHello() {
        #expect(TLSInspector.inspect(Self.opensslClientHello) == .tls(serverName: "api.example.com", applicationProtocols: ["h2", "http/1.1"]))
    }

    /// The SNI reaches chain matching, RBAC and %REQUESTED_SERVER_NAME%: one that is not a host name is ignored.
    @Test func aServerNameThatIsNotAHostNameIsIgnored() {
        let good = Array("api.Example.com".utf8)
        var hello = Self.opensslClientHello
        let at = try! #require((0...(hello.count - good.count)).first { Array(hello[$0..<$0 + good.count]) == good })
        hello[at + 3] = 0x0D  // "api\r…": same length, so every length field stays right
        #expect(TLSInspector.inspect(hello) == .tls(serverName: nil, applicationProtocols: ["h2", "http/1.1"]))
    }

    @Test func waitsForTheWholeClientHello() {
        for cut in [1, 5, 9, 60, Self.opensslClientHello.count - 1] {
            #expect(TLSInspector.inspect(Self.opensslClientHello.prefix(cut)) == .needMore, "cut at \(cut)")
        }
    }

    @Test func plaintextIsNotTLS() {
        #expect(TLSInspector.inspect(Array("GET / HTTP/1.1\r\n".utf8)) == .notTLS)
        #expect(TLSInspector.inspect([0x16, 0x02, 0x00, 0x00, 0x10]) == .notTLS)  // not a 3.x record
        #expect(TLSInspector.inspect([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]) == .notTLS)  // ServerHello
    }
}

/// TLS passthrough by SNI: one listener, chains by server_names (exact beats wildcard), tcp_proxy to
/// different clusters. The proxy never decrypts; it reads the ClientHello and replays it.
@Suite(.serialized) struct TLSPassthroughTests {
    static func config(exact: Int, wildcard: Int, other: Int) -> String {
        func chain(_ match: String, _ cluster: String) -> String {
            """
                - filter_chain_match: {\(match)}
                  filters:
                  - name: envoy.filters.network.tcp_proxy
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: \(cluster), cluster: \(cluster)}

            """
        }
        func cluster(_ name: String, _ port: Int) -> String {
            "      - {name: \(name), connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: \(name), endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(port)}}}}]}]}}\n"
        }
        return """
            admin:
              address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            static_resources:
              listeners:
              - name: sni
                address: {socket_address: {address: 127.0.0.1, port_value: 0}}
                listener_filters:
                - name: envoy.filters.listener.tls_inspector
                  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
                filter_chains:

            """ + chain(#"server_names: ["api.example.com"]"#, "exact") + chain(#"server_names: ["*.example.com"]"#, "wildcard")
            + chain(#"transport_protocol: raw_buffer"#, "plain") + """
              clusters:

            """ + cluster("exact", exact) + cluster("wildcard", wildcard) + cluster("plain", other)
    }

    @Test func serverNameChoosesTheChainAndTheBytesPassUnchanged() throws {
        let a = try EchoServer(), b = try EchoServer(), c = try EchoServer()
        defer { a.stop(); b.stop(); c.stop() }
        let proxy = try ProxyHarness(yaml: Self.config(exact: a.port, wildcard: b.port, other: c.port))
        defer { proxy.shutdown() }
        let hello = TLSInspectorTests.opensslClientHello
        #expect(try BlockingSocket.roundTrip(port: proxy.port, sending: hello, halfClose: true) == hello)
        #expect(try proxy.stat("cluster.exact.upstream_cx_total") == 1)
        // Another name under the wildcard: rewrite the SNI bytes "api" -> "www" (same length).
        var www = hello
        let api = Array("api.Example.com".utf8)  // as openssl sent it; matching is case-insensitive
        let at = try #require((0...(www.count - api.count)).first { Array(www[$0..<($0 + api.count)]) == api })
        www.replaceSubrange(at..<(at + 3), with: Array("www".utf8))
        #expect(try BlockingSocket.roundTrip(port: proxy.port, sending: www, halfClose: true) == www)
        #expect(try proxy.stat("cluster.wildcard.upstream_cx_total") == 1)
        let plain = Array("plain bytes".utf8)
        #expect(try BlockingSocket.roundTrip(port: proxy.port, sending: plain, halfClose: true) == plain)
        #expect(try proxy.stat("cluster.plain.upstream_cx_total") == 1)
    }
}
