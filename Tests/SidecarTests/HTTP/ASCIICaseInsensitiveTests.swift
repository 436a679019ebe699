import Foundation
import Testing

@testable import SidecarCore

/// Header-name comparison: ASCII letters in either case, every other byte exactly.
@Suite struct ASCIICaseInsensitiveTests {
    @Test func lettersMatchInEitherCaseAndNothingElseDoes() {
        #expect(equalsIgnoringASCIICase("X-Request-ID", "x-request-id"))
        #expect(equalsIgnoringASCIICase("", ""))
        #expect(!equalsIgnoringASCIICase("x-request-id", "x-request-i"))
        // 0x40 '@' and 0x60 '`' differ only in the case bit, as do '[' and '{': not letters, not equal.
        #expect(!equalsIgnoringASCIICase("@", "`"))
        #expect(!equalsIgnoringASCIICase("[", "{"))
        #expect(!equalsIgnoringASCIICase("é", "É"))
        // Substrings (contiguous views) and bridged strings (possibly not) give the same answers.
        let text = "Host: EXAMPLE.com"
        #expect(equalsIgnoringASCIICase(text.dropFirst(6), "example.COM"))
        let bridged = NSString(string: "Content-Type") as String
        #expect(equalsIgnoringASCIICase(bridged, "content-type"))
        #expect(!equalsIgnoringASCIICase(bridged, "content-typf"))
    }
}
