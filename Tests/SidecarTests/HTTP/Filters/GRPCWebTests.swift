import Foundation
import NIOCore
import Testing
@testable import Sidecar

struct GRPCWebBase64Tests {
    @Test(arguments: ["", "f", "fo", "foo", "foob", "fooba", "foobar", String(repeating: "\u{0}\u{1}\u{FF}x", count: 50)])
    func roundTripsLikeFoundation(_ text: String) throws {
        let bytes = Array(text.utf8)
        var encoded = ByteBuffer()
        Base64.encode(ByteBuffer(bytes: bytes).readableBytesView, into: &encoded)
        #expect(String(buffer: encoded) == Data(bytes).base64EncodedString())
        var decoded = ByteBuffer()
        #expect(Base64.decode(encoded.readableBytesView, into: &decoded))
        #expect(Array(decoded.readableBytesView) == bytes)
    }

    @Test(arguments: ["A", "AB=", "A===", "AA*A", "AA==AAAA", "AAA=AAAA", "====", "A=AA"])
    func refusesWhatEnvoysDecoderRefuses(_ text: String) {
        var out = ByteBuffer()
        #expect(!Base64.decode(ByteBuffer(string: text).readableBytesView, into: &out))
    }
}
