import Testing
@testable import SidecarCore

struct GRPCTimeoutTests {
    @Test(arguments: [
        ("1H", Int64(3_600_000_000_000)), ("2M", 120_000_000_000), ("3S", 3_000_000_000), ("250m", 250_000_000),
        ("7u", 7_000), ("9n", 9), ("99999999m", 99_999_999_000_000),
    ])
    func parsesEveryUnit(_ text: String, _ nanoseconds: Int64) {
        #expect(GRPCTimeout.parse(text)?.nanoseconds == nanoseconds)
    }

    @Test(arguments: ["", "m", "10", "10x", "123456789m", "-5S", "1.5S", " 5S"])
    func refusesMalformedValues(_ text: String) {
        #expect(GRPCTimeout.parse(text) == nil)
    }

    @Test func theRouteTimeoutFollowsEnvoysFinalTimeout() {
        // The header, capped by the max; no header: the max; zero max: the header uncapped, or no timeout.
        #expect(GRPCTimeout.routeTimeout(header: "200m", max: .seconds(1), offset: nil) == .milliseconds(200))
        #expect(GRPCTimeout.routeTimeout(header: "5S", max: .seconds(1), offset: nil) == .seconds(1))
        #expect(GRPCTimeout.routeTimeout(header: nil, max: .seconds(1), offset: nil) == .seconds(1))
        #expect(GRPCTimeout.routeTimeout(header: "5S", max: .seconds(0), offset: nil) == .seconds(5))
        #expect(GRPCTimeout.routeTimeout(header: nil, max: .seconds(0), offset: nil).isZero)
        #expect(GRPCTimeout.routeTimeout(header: "bogus", max: .seconds(0), offset: nil).isZero)
        // The offset comes off when it is smaller than the header's value, before the cap.
        #expect(GRPCTimeout.routeTimeout(header: "500m", max: .seconds(0), offset: .milliseconds(100)) == .milliseconds(400))
        #expect(GRPCTimeout.routeTimeout(header: "50m", max: .seconds(0), offset: .milliseconds(100)) == .milliseconds(50))
        #expect(GRPCTimeout.routeTimeout(header: "3S", max: .seconds(1), offset: .milliseconds(500)) == .seconds(1))
    }
}
