import Foundation
import Testing
@testable import FuzzTargets
import Sidecar
import SidecarCore

/// The fuzz targets reach what they claim to (a target that silently did nothing would fuzz nothing), and every
/// committed input — seeds, the corpus libFuzzer grew, and each crash found so far — runs through its target
/// without crashing this process.
@Suite(.serialized) struct FuzzTargetTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz").standardized.path

    @Test func http1InputsReachTheProxyItsFiltersAndTheBackend() {
        let proxy = ProxyFuzz.shared
        // `connection: close` ends each exchange when the answer is complete, not after a quiet time.
        func answer(_ raw: String) -> String {
            let bytes = Array(raw.utf8).withUnsafeBytes {
                FuzzClient.exchange(port: proxy.port, prefix: [], input: $0, quiet: 5000, limit: 10000)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        let direct = answer("GET /direct HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        #expect(direct.hasPrefix("HTTP/1.1 200 OK\r\n") && direct.hasSuffix("direct"))
        let forwarded = answer("POST /x HTTP/1.1\r\nHost: a\r\nOrigin: http://a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc")
        #expect(forwarded.contains("x-backend: fuzz") && forwarded.hasSuffix("seen POST 3\n"))
        let aborted = answer("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-envoy-fault-abort-request: 418\r\n\r\n")
        #expect(aborted.hasPrefix("HTTP/1.1 418"))
        let normalised = answer("GET /a/../rewrite/b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        #expect(normalised.contains("x-backend: fuzz"))
        let bad = answer("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(bad.hasPrefix("HTTP/1.1 400"))
    }

    @Test func http2InputsFollowThePrefaceAndGetStreamsAnswered() {
        // HEADERS on stream 1, END_STREAM|END_HEADERS, HPACK: :method GET, :path /direct (literal),
        // :scheme http, :authority a.
        let path = Array("/direct".utf8)
        var block: [UInt8] = [0x82, 0x44, UInt8(path.count)] + path + [0x86, 0x41, 0x01, UInt8(ascii: "a")]
        block = [0, 0, UInt8(block.count), 0x01, 0x05, 0, 0, 0, 1] + block
        let answer = block.withUnsafeBytes {
            FuzzClient.exchange(port: ProxyFuzz.shared.port, prefix: ProxyFuzz.h2Preface, input: $0, quiet: 500,
                                limit: 10000)
        }
        let frames = Self.frames(answer)
        #expect(frames.contains { $0.type == 0x1 && $0.stream == 1 }, "a HEADERS frame on stream 1")
        #expect(frames.contains { $0.type == 0x0 && $0.stream == 1 && $0.payload == Array("direct".utf8) })
    }

    @Test func everyRouteTableLoadsAndTheConformanceTablesAreAmongThem() throws {
        let count = RouteFuzz.shared.tables.count
        let conformance = URL(fileURLWithPath: Self.fuzzDirectory)
            .appendingPathComponent("../../../shared/conformance/envoy-router-check/config").standardized.path
        let yamls = ((try? FileManager.default.contentsOfDirectory(atPath: conformance)) ?? [])
            .filter { $0.hasSuffix(".yaml") }
        try #require(!yamls.isEmpty, "Envoy's router_check tables at \(conformance)")
        #expect(count >= 1 + yamls.count / 2, "our table and most of Envoy's router_check tables load")
    }

    @Test func theProxyConfigSeedLoads() throws {
        _ = try Bootstrap.load(text: ProxyFuzz.config(backendPort: 9))
    }

    @Test(arguments: FuzzTarget.allCases)
    func committedInputsRunWithoutCrashing(_ target: FuzzTarget) throws {
        var ran = 0
        for kind in ["seeds", "corpus", "regressions"] {
            for file in FuzzInputs.files(at: "\(Self.fuzzDirectory)/\(kind)/\(target.rawValue)") {
                let data = try #require(FileManager.default.contents(atPath: file))
                target.run(Array(data))
                ran += 1
            }
        }
        #expect(ran > 0, "\(target.rawValue) has inputs under \(Self.fuzzDirectory)")
    }

    static func frames(_ bytes: [UInt8]) -> [(type: UInt8, stream: UInt32, payload: [UInt8])] {
        var out: [(UInt8, UInt32, [UInt8])] = []
        var i = 0
        while i + 9 <= bytes.count {
            let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            let stream = UInt32(bytes[i + 5] & 0x7f) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8
                | UInt32(bytes[i + 8])
            guard i + 9 + length <= bytes.count else { break }
            out.append((bytes[i + 3], stream, Array(bytes[(i + 9)..<(i + 9 + length)])))
            i += 9 + length
        }
        return out
    }
}
