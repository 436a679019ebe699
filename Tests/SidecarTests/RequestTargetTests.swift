import Testing

@testable import Sidecar

/// HTTP/1.1 request targets as Envoy's codec takes them (the proxy's answers to the same requests are held to
/// Envoy 1.40's in scripts/e2e-smuggling).
struct RequestTargetTests {
    @Test func absoluteFormGivesItsAuthorityAndOriginForm() {
        #expect(RequestTarget.absoluteForm("http://a.example/x?q=1")! == ("a.example", "/x?q=1"))
        #expect(RequestTarget.absoluteForm("HTTPS://a.example:8443")! == ("a.example:8443", "/"))
        #expect(RequestTarget.absoluteForm("http://a.example?q")! == ("a.example", "/?q"))
        #expect(RequestTarget.absoluteForm("http://a.example/p#frag")! == ("a.example", "/p"))
        #expect(RequestTarget.absoluteForm("/x") == nil)
        #expect(RequestTarget.absoluteForm("*") == nil)
        #expect(RequestTarget.absoluteForm("ftp://a/x") == nil)
        #expect(RequestTarget.absoluteForm("http:///x") == nil)
    }

    @Test func aConnectTargetIsHostAndPort() {
        for good in ["a.example:443", "10.0.0.1:80", "[::1]:8080", "svc_1.ns:65535"] {
            #expect(RequestTarget.isAuthorityForm(good), "\(good)")
        }
        for bad in ["/x", "a.example", "a.example:", ":443", "a.example:99999", "a.example:4x3", "a/b:443", "[::1:80"] {
            #expect(!RequestTarget.isAuthorityForm(bad), "\(bad)")
        }
    }
}
