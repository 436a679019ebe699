import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Hop-by-hop headers end at the proxy, in either direction.
struct HopByHopTests {
    static func stripped(_ pairs: [(String, String)]) -> [(String, String)] {
        var h = HTTPHeaders(pairs)
        HopByHop.strip(&h)
        return h.map { ($0.name, $0.value) }
    }

    @Test func headersWithoutHopByHopNamesAreLeftAlone() {
        let pairs = [("content-type", "text/plain"), ("x-te", "1"), ("tea", "2"), ("upgraded", "3")]
        #expect(Self.stripped(pairs).map(\.0) == pairs.map(\.0))
    }

    @Test func connectionKeepAliveAndProxyConnectionGoInAnyCase() {
        let out = Self.stripped([("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("a", "1"),
                                 ("PROXY-CONNECTION", "close"), ("Upgrade", "h2c"), ("b", "2")])
        #expect(out.map(\.0) == ["a", "b"])
    }

    @Test func headersNamedByConnectionGoButFramingHeadersStay() {
        let out = Self.stripped([("connection", "close, X-Foo ,x-bar"), ("x-foo", "1"), ("X-Bar", "2"),
                                 ("content-length", "3"), ("x-baz", "4")])
        #expect(out.map(\.0) == ["content-length", "x-baz"])
        let framing = Self.stripped([("connection", "content-length, transfer-encoding"), ("content-length", "3")])
        #expect(framing.map(\.0) == ["content-length"])
    }

    @Test func teTrailersIsKeptAndOtherTeValuesGo() {
        #expect(Self.stripped([("te", "trailers"), ("a", "1")]).map(\.0).sorted() == ["a", "te"])
        #expect(Self.stripped([("TE", "gzip, trailers")]).map { "\($0.0): \($0.1)" } == ["te: trailers"])
        #expect(Self.stripped([("te", "gzip")]).isEmpty)
        // Named by connection: it goes entirely.
        #expect(Self.stripped([("connection", "te"), ("te", "trailers")]).isEmpty)
    }
}
