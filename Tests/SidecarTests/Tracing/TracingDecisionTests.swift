import Testing

@testable import SidecarCore
@testable import SidecarTracing

/// Envoy's tracing decision as the request id carries it (the UUID's version digit).
@Suite struct TracingDecisionTests {
    static let untraced = "11111111-2222-4333-8444-555555555555"

    @Test func randomSamplingMarksTheRequestID() {
        let (reason, id) = TracingDecision.decide(
            requestID: Self.untraced, hasClientTraceID: false, forceTrace: false, config: TracingConfig(),
            runtime: nil, random: 0)
        #expect(reason == .sampling)
        #expect(id == "11111111-2222-9333-8444-555555555555")
    }

    @Test func randomSamplingUsesTheRequestIDsOwnValue() {
        // 0x11111111 % 10000 = 1153: sampled at 11.54 %, not at 11.53 %.
        var config = TracingConfig()
        config.randomSampling = FractionalPercent(numerator: 1154, denominator: 10_000)
        #expect(TracingDecision.decide(requestID: Self.untraced, hasClientTraceID: false, forceTrace: false,
                                       config: config, runtime: nil, random: 0).reason == .sampling)
        config.randomSampling = FractionalPercent(numerator: 1153, denominator: 10_000)
        let (reason, id) = TracingDecision.decide(requestID: Self.untraced, hasClientTraceID: false, forceTrace: false,
                                                  config: config, runtime: nil, random: 0)
        #expect(reason == .notTraceable)
        #expect(id == nil)
    }

    @Test func clientTraceIDAndForceTraceComeFirst() {
        var config = TracingConfig()
        config.randomSampling = .zero
        #expect(TracingDecision.decide(requestID: Self.untraced, hasClientTraceID: true, forceTrace: true,
                                       config: config, runtime: nil, random: 0)
            == (.clientForced, "11111111-2222-b333-8444-555555555555"))
        #expect(TracingDecision.decide(requestID: Self.untraced, hasClientTraceID: false, forceTrace: true,
                                       config: config, runtime: nil, random: 0)
            == (.serviceForced, "11111111-2222-a333-8444-555555555555"))
        config.clientSampling = .zero
        #expect(TracingDecision.decide(requestID: Self.untraced, hasClientTraceID: true, forceTrace: false,
                                       config: config, runtime: nil, random: 0).reason == .notTraceable)
    }

    @Test func aDecisionAlreadyInTheIDStandsButOverallSamplingCanUndoIt() {
        var config = TracingConfig()
        config.randomSampling = .zero
        let sampled = "11111111-2222-9333-8444-555555555555"
        #expect(TracingDecision.decide(requestID: sampled, hasClientTraceID: false, forceTrace: false,
                                       config: config, runtime: nil, random: 0) == (.sampling, nil))
        config.overallSampling = .zero
        #expect(TracingDecision.decide(requestID: sampled, hasClientTraceID: false, forceTrace: false,
                                       config: config, runtime: nil, random: 0) == (.notTraceable, Self.untraced))
    }

    @Test(arguments: [nil, "not-a-uuid", "11111111x2222-4333-8444-555555555555", "zzzzzzzz-2222-4333-8444-555555555555"])
    func noUsableRequestIDIsNotTraced(_ id: String?) {
        #expect(TracingDecision.decide(requestID: id, hasClientTraceID: true, forceTrace: true,
                                       config: TracingConfig(), runtime: nil, random: 0) == (.notTraceable, nil))
    }

    /// A request id the connection manager makes is decided on its bits before it is written: the same reason,
    /// and the same id, as deciding on the written id and rewriting it.
    @Test func decidingANewIDMatchesDecidingItsText() {
        var random = FastRandom()
        var sampledAt = TracingConfig()
        sampledAt.randomSampling = FractionalPercent(numerator: 3_000, denominator: 10_000)
        var overall = TracingConfig()
        overall.overallSampling = FractionalPercent(numerator: 5_000, denominator: 10_000)
        var client = TracingConfig()
        client.clientSampling = FractionalPercent(numerator: 0, denominator: 100)
        var reasons: Set<String> = []
        for config in [TracingConfig(), sampledAt, overall, client] {
            for n in 0..<500 {
                let bits = random.uuidBits()
                let text = FastRandom.uuid(bits)
                let hasClient = n % 3 == 0
                let draw = random.next()
                let (reason, rewritten) = TracingDecision.decide(
                    requestID: text, hasClientTraceID: hasClient, forceTrace: false, config: config, runtime: nil,
                    random: draw)
                let decided = TracingDecision.decide(
                    newRequestID: bits, hasClientTraceID: hasClient, forceTrace: false, config: config, runtime: nil,
                    random: draw)
                #expect(decided == reason)
                #expect(FastRandom.uuid(bits, version: decided.digit) == (rewritten ?? text))
                reasons.insert("\(reason)")
            }
        }
        #expect(reasons == ["sampling", "notTraceable", "clientForced"])
    }
}
