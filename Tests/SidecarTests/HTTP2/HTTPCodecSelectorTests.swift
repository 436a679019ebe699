import NIOCore
import Testing
@testable import Sidecar

struct HTTPCodecSelectorTests {
    static func decide(_ text: String) -> HTTPCodecSelector.Decision { decide(Array(text.utf8)) }

    static func decide(_ bytes: [UInt8]) -> HTTPCodecSelector.Decision {
        HTTPCodecSelector.decide(ByteBuffer(bytes: bytes).readableBytesView)
    }

    @Test func thePrefaceDecidesAsItArrives() {
        let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        #expect(Self.decide("") == .undecided)
        // Every proper prefix of the preface (in bytes: "\r\n" is one Character) waits for more.
        let bytes = Array(preface.utf8)
        for n in 1..<bytes.count {
            #expect(Self.decide(Array(bytes.prefix(n))) == .undecided, "\(n) bytes")
        }
        #expect(Self.decide(preface) == .http2)
        #expect(Self.decide(preface + "\u{0}\u{0}\u{12}\u{4}") == .http2)
    }

    @Test func anythingElseIsHTTP1AtItsFirstDifferentByte() {
        #expect(Self.decide("G") == .http1)
        #expect(Self.decide("GET / HTTP/1.1\r\n") == .http1)
        #expect(Self.decide("POST") == .http1)
        // "PR" could still be the preface; "PRO" cannot.
        #expect(Self.decide("PR") == .undecided)
        #expect(Self.decide("PRO") == .http1)
        #expect(Self.decide("PRI * HTTP/1.1\r\n") == .http1)
    }

    @Test func aConnectionThatClaimsHTTP2ButBreaksThePrefaceIsRefused() {
        // Envoy treats `PRI * HTTP/2.0` as HTTP/2 and closes on the rest.
        #expect(Self.decide("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n") == .badPreface)
        #expect(Self.decide("PRI * HTTP/2.0\n") == .badPreface)
    }
}
