import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore

struct GRPCStatsTests {
    @Test func countsMessagesWhateverTheirSplit() {
        // Three messages (2, 0 and 300 bytes) delivered one byte at a time and in uneven pieces.
        var bytes: [UInt8] = [0, 0, 0, 0, 2, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 44]
        bytes += [UInt8](repeating: 9, count: 300)
        for piece in [1, 3, 7, 1000] {
            var counter = GRPCFrameCounter()
            var i = 0
            while i < bytes.count {
                counter.consume(ByteBuffer(bytes: bytes[i..<min(i + piece, bytes.count)]).readableBytesView)
                i += piece
            }
            #expect(counter.messages == 3, "pieces of \(piece)")
        }
    }

    @Test(arguments: [
        ("stats_for_all_methods: true", "stats_for_all_methods: true"),
        ("emit_filter_state: true", "emit_filter_state"),
        ("enable_upstream_stats: true", "enable_upstream_stats"),
        ("{stats_for_all_methods: false, individual_method_stats_allowlist: {services: []}}".dropFirst().dropLast().description,
         "only one of"),
    ])
    func refusesWhatItDoesNotDo(_ field: String, _ message: String) {
        let yaml = ProxyConfig.yaml(clusters: [("backend", 1)], httpFilters: [
            #"{name: envoy.filters.http.grpc_stats, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig, "#
                + field + "}}",
        ])
        do {
            _ = try Bootstrap.load(text: yaml)
            Issue.record("loaded: \(field)")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }
}
