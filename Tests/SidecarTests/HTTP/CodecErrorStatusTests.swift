import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar

/// The statuses Envoy 1.40 answers requests its HTTP/1 codec refuses, told apart from NIO's coarser parser errors by
/// the bytes (the same requests through the proxy: `ProxyIntegrationTests`, and against Envoy in scripts/e2e-smuggling).
struct CodecErrorStatusTests {
    private func status(_ error: HTTPParserError, _ text: String) -> Int {
        Int(CodecErrorStatus.status(for: error, input: ByteBuffer(string: text)).code)
    }

    @Test func aVersionOtherThan10And11Is426AndAGarbledOne400() {
        #expect(status(.invalidVersion, "GET /a\r\n\r\n") == 426)
        #expect(status(.invalidVersion, "GET /a HTTP/2.0\r\nHost: a\r\n\r\n") == 426)
        #expect(status(.invalidVersion, "\r\nGET /a HTTP/3.0\r\nHost: a\r\n\r\n") == 426)
        #expect(status(.invalidVersion, "GET http://a/x HTTP/0.9\r\n\r\n") == 426)
        #expect(status(.invalidVersion, "GET /a HTTP/1.x\r\nHost: a\r\n\r\n") == 400)
        #expect(status(.invalidVersion, "GET /a HTTP/1.1\nHost: a\n\n") == 400)
        #expect(status(.invalidVersion, "GET /a HTTP/12.0\r\n\r\n") == 400)
        #expect(status(.invalidVersion, "GET /a HTTP/1.1 x\r\n\r\n") == 400)
        // The middle of a head (it began in an earlier read) is not taken for a request line.
        #expect(status(.invalidVersion, "Host: a\r\n\r\n") == 400)
        #expect(status(.invalidVersion, "get /a\r\n\r\n") == 400)
        // Without the bytes, the safe answer.
        #expect(Int(CodecErrorStatus.status(for: .invalidVersion, input: nil).code) == 400)
    }

    @Test func anUnknownTransferCodingIs501UnlessTheHeadIsMalformed() {
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n") == 501)
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nhost: a\r\ntransfer-ENCODING: chunked, gzip\r\n\r\n5\r\n") == 501)
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n") == 501)
        // obs-fold and bare LF are the parser's refusals whatever the coding says: 400.
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n") == 400)
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nHost: a\nTransfer-Encoding: xchunked\r\n\r\n") == 400)
        #expect(status(.unknown, "GET /a HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n") == 400)
        // With a Content-Length, in either order, it is the parser's CL+TE refusal: 400.
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n") == 400)
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nTransfer-Encoding: x\r\ncontent-length: 6\r\n\r\n") == 400)
        // A field that only looks like it, or one in the body, is not the head's.
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nX-Transfer-Encoding: x\r\n\r\nTransfer-Encoding: x\r\n") == 400)
        #expect(status(.unknown, "POST /a HTTP/1.1\r\nTransfer-Encoding : x\r\n\r\n") == 400)
    }

    @Test func otherErrorsKeepTheirStatus() {
        #expect(status(.headerOverflow, "GET /a HTTP/1.1\r\n") == 431)
        #expect(status(.invalidHeaderToken, "GET /a HTTP/1.1\r\nTransfer-Encoding: x\r\n\r\n") == 400)
        #expect(status(.unexpectedContentLength, "GET /a HTTP/2.0\r\n\r\n") == 400)
    }
}
