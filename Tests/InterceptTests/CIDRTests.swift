import Testing
@testable import Intercept

@Suite struct CIDRTests {
    @Test func parsesIPv4AndIPv6WithAndWithoutPrefix() throws {
        #expect(try CIDR(parsing: "10.0.0.0/8").description == "10.0.0.0/8")
        #expect(try CIDR(parsing: "198.18.0.1").description == "198.18.0.1")
        #expect(try CIDR(parsing: "198.18.0.1").prefixedDescription == "198.18.0.1/32")
        #expect(try CIDR(parsing: "fd00::/8").description == "fd00::/8")
        #expect(try CIDR(parsing: "2001:db8:0:0:1:0:0:1").description == "2001:db8::1:0:0:1")
        #expect(try CIDR(parsing: "::ffff:198.18.0.1").description == "::ffff:c612:1")
        #expect(try CIDR(parsing: "10.128.0.0/9").maskBytes == [255, 128, 0, 0])
    }

    @Test func rejectsMalformedCIDRsWithAReason() {
        #expect(throws: PolicyError.self) { try CIDR(parsing: "10.0.0/8") }
        #expect(throws: PolicyError.self) { try CIDR(parsing: "10.0.0.0/33") }
        #expect(throws: PolicyError.self) { try CIDR(parsing: "fd00::/129") }
        #expect(throws: PolicyError.self) { try CIDR(parsing: "1:2:3:4:5:6:7:8:9") }
        #expect(throws: PolicyError.self) { try CIDR(parsing: "256.0.0.1") }
        do {
            _ = try CIDR(parsing: "10.1.2.3/8")
            Issue.record("host bits accepted")
        } catch {
            #expect(error.message.contains("did you mean 10.0.0.0/8?"))
        }
    }
}
