import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore

/// Access log `filter`s: Envoy's semantics for each kind, and Envoy's validation messages' substance at load.
@Suite struct AccessLogFilterTests {
    static func filter(_ yaml: String) throws -> AccessLogFilter {
        let h = try AccessLogConfigTests.hcm(
            "{name: f, filter: \(yaml), typed_config: {\(AccessLogConfigTests.file), path: /tmp/x.log}}")
        return try #require(h.accessLogs.first?.filter)
    }

    static func loadError(_ yaml: String) -> String {
        let e = AccessLogConfigTests.loadError(
            "{name: f, filter: \(yaml), typed_config: {\(AccessLogConfigTests.file), path: /tmp/x.log}}")
        return e.map { "\($0.path) \($0.message)" } ?? "(accepted)"
    }

    static func runtime(_ values: [String: String] = [:]) -> RuntimeSnapshot {
        RuntimeSnapshot(layers: [RuntimeLayerValues(name: "static", values: values.mapValues { RuntimeEntry(raw: $0) })])
    }

    static func context(code: Int? = 200, flags: ResponseFlags = [], durationMs: Int64 = 10, requestID: String? = nil,
                        healthCheck: Bool = false) -> FormatContext {
        var info = StreamInfo()
        info.startTime = StreamStartTime(nanosecondsSinceEpoch: 0, monotonic: .uptimeNanoseconds(1_000_000_000))
        info.end = .uptimeNanoseconds(UInt64(1_000_000_000 + durationMs * 1_000_000))
        info.responseCode = code
        info.responseFlags = flags
        info.healthCheck = healthCheck
        var headers = HTTPHeaders()
        if let requestID { headers.add(name: "x-request-id", value: requestID) }
        return FormatContext(requestHeaders: headers, stream: info)
    }

    static func logs(_ f: AccessLogFilter, _ c: FormatContext, runtime: RuntimeSnapshot = runtime(),
                     random: UInt64 = 0) -> Bool {
        f.evaluate(c, .init(runtime: runtime, random: { random }))
    }

    @Test func statusCodeFilterComparesWithEQGEAndLE() throws {
        let ge = try Self.filter("{status_code_filter: {comparison: {op: GE, value: {default_value: 500}}}}")
        #expect(Self.logs(ge, Self.context(code: 503)))
        #expect(Self.logs(ge, Self.context(code: 500)))
        #expect(!Self.logs(ge, Self.context(code: 404)))
        let le = try Self.filter("{status_code_filter: {comparison: {op: LE, value: {default_value: 299}}}}")
        #expect(Self.logs(le, Self.context(code: 200)))
        #expect(!Self.logs(le, Self.context(code: 300)))
        // `op` defaults to EQ; a stream without a response code compares as 0.
        let eq = try Self.filter("{status_code_filter: {comparison: {value: {default_value: 0}}}}")
        #expect(Self.logs(eq, Self.context(code: nil)))
        #expect(!Self.logs(eq, Self.context(code: 200)))
    }

    @Test func comparisonRuntimeKeyReplacesTheDefaultValue() throws {
        let f = try Self.filter(
            "{status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: log.min_status}}}}")
        #expect(!Self.logs(f, Self.context(code: 404)))
        #expect(Self.logs(f, Self.context(code: 404), runtime: Self.runtime(["log.min_status": "400"])))
        // A value that is not an integer leaves the default.
        #expect(!Self.logs(f, Self.context(code: 404), runtime: Self.runtime(["log.min_status": "abc"])))
    }

    @Test func durationFilterComparesWholeMilliseconds() throws {
        let f = try Self.filter("{duration_filter: {comparison: {op: GE, value: {default_value: 100}}}}")
        #expect(Self.logs(f, Self.context(durationMs: 100)))
        #expect(!Self.logs(f, Self.context(durationMs: 99)))
    }

    @Test func notHealthCheckFilterDropsRequestsTheHealthCheckFilterAnswered() throws {
        let f = try Self.filter("{not_health_check_filter: {}}")
        #expect(Self.logs(f, Self.context()))
        #expect(!Self.logs(f, Self.context(healthCheck: true)))
    }

    @Test func responseFlagFilterMatchesAnyListedFlagOrAnyFlagWhenNoneListed() throws {
        let listed = try Self.filter("{response_flag_filter: {flags: [UF, URX]}}")
        #expect(Self.logs(listed, Self.context(flags: [.upstreamRetryLimitExceeded, .upstreamConnectionFailure])))
        #expect(Self.logs(listed, Self.context(flags: [.upstreamConnectionFailure])))
        #expect(!Self.logs(listed, Self.context(flags: [.noRouteFound])))
        #expect(!Self.logs(listed, Self.context()))
        let any = try Self.filter("{response_flag_filter: {}}")
        #expect(Self.logs(any, Self.context(flags: [.noRouteFound])))
        #expect(!Self.logs(any, Self.context()))
    }

    @Test func runtimeFilterSamplesByRequestIDUnlessIndependent() throws {
        let f = try Self.filter(
            "{runtime_filter: {runtime_key: log.sample, percent_sampled: {numerator: 50, denominator: HUNDRED}}}")
        // x-request-id "00000031-..." is 0x31 = 49: 49 % 100 < 50. "00000032" is 50: not sampled.
        #expect(Self.logs(f, Self.context(requestID: "00000031-aaaa-bbbb-cccc-dddddddddddd"), random: 99))
        #expect(!Self.logs(f, Self.context(requestID: "00000032-aaaa-bbbb-cccc-dddddddddddd"), random: 0))
        // No usable request id: the random draw decides.
        #expect(Self.logs(f, Self.context(requestID: "zz"), random: 10))
        #expect(!Self.logs(f, Self.context(), random: 60))
        // The runtime key overrides the numerator.
        #expect(Self.logs(f, Self.context(), runtime: Self.runtime(["log.sample": "70"]), random: 60))
        let independent = try Self.filter(
            "{runtime_filter: {runtime_key: k, percent_sampled: {numerator: 50}, use_independent_randomness: true}}")
        #expect(!Self.logs(independent, Self.context(requestID: "00000031-aaaa"), random: 99))
        // percent_sampled absent: 0 %, nothing is logged unless the runtime says otherwise.
        let unset = try Self.filter("{runtime_filter: {runtime_key: k}}")
        #expect(!Self.logs(unset, Self.context(), random: 0))
        #expect(Self.logs(unset, Self.context(), runtime: Self.runtime(["k": "100"]), random: 99))
    }

    @Test func andAndOrCombineFilters() throws {
        let and = try Self.filter("""
            {and_filter: {filters: [{status_code_filter: {comparison: {op: GE, value: {default_value: 500}}}}, \
            {response_flag_filter: {flags: [UF]}}]}}
            """)
        #expect(Self.logs(and, Self.context(code: 503, flags: [.upstreamConnectionFailure])))
        #expect(!Self.logs(and, Self.context(code: 503)))
        let or = try Self.filter("""
            {or_filter: {filters: [{status_code_filter: {comparison: {op: GE, value: {default_value: 500}}}}, \
            {response_flag_filter: {flags: [NR]}}]}}
            """)
        #expect(Self.logs(or, Self.context(code: 404, flags: [.noRouteFound])))
        #expect(Self.logs(or, Self.context(code: 503)))
        #expect(!Self.logs(or, Self.context(code: 200)))
    }

    /// What Envoy 1.40 refuses (`--mode validate`), each error naming the field.
    @Test func invalidFiltersAreRefusedNamingTheField() {
        let cases: [(String, [String])] = [
            ("{}", ["status_code_filter"]),
            ("{status_code_filter: {}}", ["comparison"]),
            ("{status_code_filter: {comparison: {op: GE}}}", ["value"]),
            ("{status_code_filter: {comparison: {op: GT, value: {default_value: 1}}}}", ["GT", "EQ"]),
            ("{response_flag_filter: {flags: [UH, XX]}}", ["XX", "flags[1]"]),
            ("{runtime_filter: {}}", ["runtime_key"]),
            ("{runtime_filter: {runtime_key: \"\"}}", ["runtime_key"]),
            ("{and_filter: {filters: [{not_health_check_filter: {}}]}}", ["and_filter", "at least 2"]),
            ("{or_filter: {filters: []}}", ["or_filter"]),
            ("{header_filter: {header: {name: x}}}", ["header_filter", "not supported"]),
            ("{grpc_status_filter: {}}", ["grpc_status_filter"]),
            ("{status_code_filter: {comparison: {op: GE, value: {default_value: 1}}}, duration_filter: {}}",
             ["only one of"]),
            ("{duration_filter: {comparison: {op: GE, value: {default_value: 1, runtim_key: a}}}}", ["runtim_key"]),
        ]
        for (yaml, words) in cases {
            let text = Self.loadError(yaml)
            for w in words { #expect(text.contains(w), "\(yaml): \(text) does not name \(w)") }
        }
    }

    @Test func everyEnvoyResponseFlagNameIsAccepted() throws {
        let names = "LH UH UT LR UR UF UC UO NR DI FI RL UAEX RLSE DC URX SI IH DPE UMSDR RFCF NFCF DT UPE NC OM DF DO DR UDO"
        let f = try Self.filter("{response_flag_filter: {flags: [\(names.split(separator: " ").joined(separator: ", "))]}}")
        #expect(f == .responseFlag(Set(ResponseFlag.allCases)))
    }
}
