import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

extension CompressionFilterTests {
    /// `envoy.filters.http.decompressor` through a real proxy on loopback, against a scripted upstream, with the
    /// headers and counters Envoy 1.40 gives for the same exchanges.
    @Suite struct DecompressorFilterTests {
        static let type = "type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor"
        static let libraryTypes = [
            "gzip": "type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip",
            "br": "type.googleapis.com/envoy.extensions.compression.brotli.decompressor.v3.Brotli",
            "zstd": "type.googleapis.com/envoy.extensions.compression.zstd.decompressor.v3.Zstd",
        ]

        static func decompressor(_ encoding: String, name: String = "envoy.filters.http.decompressor",
                                 library: String = "lib", libraryExtra: String = "", _ extra: String = "") -> String {
            let lib = "{name: \(library), typed_config: {\"@type\": \(libraryTypes[encoding]!)"
                + (libraryExtra.isEmpty ? "" : ", " + libraryExtra) + "}}"
            return "{name: \(name), typed_config: {\"@type\": \(type), decompressor_library: \(lib)"
                + (extra.isEmpty ? "" : ", " + extra) + "}}"
        }

        static func proxy(_ backend: ScriptedBackend, _ filters: [String]) throws -> ProxyHarness {
            try ProxyHarness(yaml: ProxyConfig.yaml(clusters: [("backend", backend.port)], httpFilters: filters))
        }

        /// An upstream that answers "ok" and records requests.
        static func okBackend() throws -> ScriptedBackend {
            try ScriptedBackend { _ in ScriptedBackend.Response(headers: [("content-length", "2")], body: Array("ok".utf8)) }
        }

        static let stat = "http.ingress_http.decompressor."

        /// Sends `body` as a POST on a new connection and returns the status.
        static func post(_ proxy: ProxyHarness, _ body: [UInt8], headers: [String]) throws -> Int {
            let c = try proxy.client()
            defer { c.close() }
            try c.send(RawClient.request("POST", "/upload", headers: headers + ["content-length: \(body.count)"]))
            try c.send(body)
            return try c.readResponse().status
        }

        @Test func requestBodiesAreDecompressedPerEncoding() throws {
            let backend = try Self.okBackend()
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [
                Self.decompressor("gzip", name: "gzip", library: "dgz"),
                Self.decompressor("br", name: "brotli", library: "dbr"),
                Self.decompressor("zstd", name: "zstd", library: "dzs"),
            ])
            defer { proxy.shutdown() }
            let text = TestCodings.text(count: 20_000)
            for encoding in ["gzip", "br", "zstd"] {
                let compressed = TestCodings.encode(encoding, text)
                #expect(try Self.post(proxy, compressed, headers: ["content-encoding: \(encoding)"]) == 200)
                let seen = try #require(backend.lastRequest)
                #expect(seen.body == text, "\(encoding)")
                #expect(seen.header("content-encoding") == nil)
                #expect(seen.header("content-length") == nil)
                #expect(seen.header("transfer-encoding") == "chunked")
            }
            let gz = TestCodings.encode("gzip", text).count
            #expect(try proxy.stat(Self.stat + "dgz.gzip.request.decompressed") == 1)
            #expect(try proxy.stat(Self.stat + "dgz.gzip.request.not_decompressed") == 2)
            #expect(try proxy.stat(Self.stat + "dgz.gzip.request.total_compressed_bytes") == gz)
            #expect(try proxy.stat(Self.stat + "dgz.gzip.request.total_uncompressed_bytes") == 20_000)
            #expect(try proxy.stat(Self.stat + "dbr.brotli.request.decompressed") == 1)
            #expect(try proxy.stat(Self.stat + "dzs.zstd.request.decompressed") == 1)
            #expect(try proxy.stat(Self.stat + "dzs.zstd.request.total_uncompressed_bytes") == 20_000)
            // Every one of them advertised its encoding upstream, in chain order.
            #expect(backend.lastRequest?.header("accept-encoding") == "gzip,br,zstd")
        }

        @Test func requestTrailersGetTheByteCounts() throws {
            let backend = try Self.okBackend()
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.decompressor("gzip", library: "basic")])
            defer { proxy.shutdown() }
            let text = TestCodings.text(count: 3000)
            let gz = TestCodings.gzip(text)
            let c = try proxy.client()
            try c.send(RawClient.request("POST", "/up", headers: ["content-encoding: gzip", "transfer-encoding: chunked"])
                + String(gz.count, radix: 16) + "\r\n")
            try c.send(gz)
            try c.send("\r\n0\r\nx-sum: 1\r\n\r\n")
            #expect(try c.readResponse().status == 200)
            let seen = try #require(backend.lastRequest)
            #expect(seen.body == text)
            let trailers = Dictionary(seen.trailers.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            #expect(trailers["x-sum"] == "1")
            #expect(trailers["x-envoy-decompressor-basic-compressed-bytes"] == String(gz.count))
            #expect(trailers["x-envoy-decompressor-basic-uncompressed-bytes"] == "3000")
        }

        @Test func onlyTheFirstCodingIsRemovedAndNoTransformIsHonoured() throws {
            let backend = try Self.okBackend()
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.decompressor("gzip")])
            defer { proxy.shutdown() }
            let text = TestCodings.text(count: 5000)
            let gz = TestCodings.gzip(text)
            // Envoy takes the first listed coding as the one to undo.
            _ = try Self.post(proxy, gz, headers: ["content-encoding: GZIP, br"])
            #expect(backend.lastRequest?.header("content-encoding") == "br")
            #expect(backend.lastRequest?.body == text)
            _ = try Self.post(proxy, gz, headers: ["content-encoding: br, gzip"])
            #expect(backend.lastRequest?.header("content-encoding") == "br, gzip")
            #expect(backend.lastRequest?.body == gz)
            _ = try Self.post(proxy, gz, headers: ["content-encoding: gzip", "cache-control: no-transform"])
            #expect(backend.lastRequest?.header("content-encoding") == "gzip")
            #expect(backend.lastRequest?.header("content-length") == String(gz.count))
            #expect(backend.lastRequest?.body == gz)
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.decompressed") == 1)
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.not_decompressed") == 2)

            let ignoring = try Self.proxy(backend, [Self.decompressor(
                "gzip", "request_direction_config: {common_config: {ignore_no_transform_header: true}}")])
            defer { ignoring.shutdown() }
            _ = try Self.post(ignoring, gz, headers: ["content-encoding: gzip", "cache-control: no-transform"])
            #expect(backend.lastRequest?.body == text)
        }

        @Test func acceptEncodingAdvertisesTheLibrary() throws {
            let backend = try Self.okBackend()
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.decompressor("gzip")])
            defer { proxy.shutdown() }
            let cases: [(String?, String)] = [
                (nil, "gzip"), ("br", "br,gzip"), ("gzip;q=0.3, br", "br,gzip"), ("x,,y", "x,y,gzip"), ("", "gzip"),
                ("GZIP", "GZIP,gzip"),
            ]
            for (sent, expected) in cases {
                _ = try proxy.fetch("GET", "/x", headers: sent.map { ["accept-encoding: \($0)"] } ?? [])
                #expect(backend.lastRequest?.header("accept-encoding") == expected, "sent \(sent ?? "nothing")")
            }
            // A request without a body counts nothing.
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.not_decompressed") == 0)

            let quiet = try Self.proxy(backend, [
                Self.decompressor("gzip", name: "a", "request_direction_config: {advertise_accept_encoding: false}"),
                Self.decompressor("br", name: "b", "response_direction_config: {common_config: {enabled: {default_value: false, runtime_key: x}}}"),
            ])
            defer { quiet.shutdown() }
            _ = try quiet.fetch("GET", "/x", headers: ["accept-encoding: zstd"])
            #expect(backend.lastRequest?.header("accept-encoding") == "zstd")
        }

        @Test func responsesAreDecompressed() throws {
            let text = TestCodings.text(count: 30_000)
            let backend = try ScriptedBackend { request in
                let encoding = String(request.uri.dropFirst())
                let body = TestCodings.encode(encoding, text)
                return ScriptedBackend.Response(
                    headers: [("content-type", "text/plain"), ("content-encoding", encoding),
                              ("content-length", String(body.count))], body: body)
            }
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [
                Self.decompressor("gzip", name: "gzip", library: "g"),
                Self.decompressor("br", name: "brotli", library: "b"),
                Self.decompressor("zstd", name: "zstd", library: "z"),
            ])
            defer { proxy.shutdown() }
            for encoding in ["gzip", "br", "zstd"] {
                let r = try proxy.fetch("GET", "/" + encoding)
                #expect(r.status == 200)
                #expect(r.header("content-encoding") == nil)
                #expect(r.header("content-length") == nil)
                #expect(r.header("transfer-encoding") == "chunked")
                #expect(r.body == text, "\(encoding)")
            }
            #expect(try proxy.stat(Self.stat + "g.gzip.response.decompressed") == 1)
            #expect(try proxy.stat(Self.stat + "g.gzip.response.not_decompressed") == 2)
            #expect(try proxy.stat(Self.stat + "z.zstd.response.total_uncompressed_bytes") == 30_000)
            // A HEAD response has no body to decompress, and counts nothing.
            let c = try proxy.client()
            try c.send(RawClient.request("HEAD", "/gzip"))
            let head = try c.readResponse(head: true)
            #expect(head.header("content-encoding") == "gzip")
            #expect(try proxy.stat(Self.stat + "g.gzip.response.decompressed") == 1)
            #expect(try proxy.stat(Self.stat + "g.gzip.response.not_decompressed") == 2)
        }

        @Test func decompressionBombsAreCutAsEnvoyCutsThem() throws {
            let backend = try Self.okBackend()
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [
                Self.decompressor("gzip", name: "gzip", library: "g"),
                Self.decompressor("br", name: "brotli", library: "b"),
            ])
            defer { proxy.shutdown() }
            let zeros = [UInt8](repeating: 0, count: 200_000)
            let gz = TestCodings.gzip(zeros)
            #expect(gz.count < 2000)
            _ = try Self.post(proxy, gz, headers: ["content-encoding: gzip"])
            // At most 100 times the compressed size, in whole 4 KiB chunks: the rest is dropped.
            let got = try #require(backend.lastRequest?.body.count)
            #expect(got < 200_000)
            #expect(got > 100 * gz.count && got <= 100 * gz.count + 4096)
            #expect(try proxy.stat(Self.stat + "g.gzip.decompressor_library.zlib_data_error") == 1)

            _ = try Self.post(proxy, TestCodings.brotli(zeros), headers: ["content-encoding: br"])
            // 13 bytes give 16 KiB, as in Envoy; the overflow is counted again by the empty end-of-body call.
            #expect(backend.lastRequest!.body.count == 16384)
            #expect(try proxy.stat(Self.stat + "b.brotli.decompressor_library.brotli_output_overflow") == 2)
            #expect(try proxy.stat(Self.stat + "b.brotli.decompressor_library.brotli_error") == 2)

            // max_inflate_ratio raises the limit.
            let lenient = try Self.proxy(backend, [Self.decompressor("gzip", library: "l", libraryExtra: "max_inflate_ratio: 1032")])
            defer { lenient.shutdown() }
            _ = try Self.post(lenient, gz, headers: ["content-encoding: gzip"])
            #expect(backend.lastRequest?.body == zeros)
        }

        @Test func corruptInputCountsAZlibErrorAndTheRequestGoesOn() throws {
            let backend = try Self.okBackend()
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.decompressor("gzip")])
            defer { proxy.shutdown() }
            #expect(try Self.post(proxy, Array("this is not gzip at all".utf8), headers: ["content-encoding: gzip"]) == 200)
            #expect(backend.lastRequest?.body == [])
            #expect(try proxy.stat(Self.stat + "lib.gzip.decompressor_library.zlib_data_error") == 1)
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.decompressed") == 1)
            // Before any error the library counters are not shown (Envoy creates them with the first decompressor).
            let fresh = try Self.proxy(backend, [Self.decompressor("gzip")])
            defer { fresh.shutdown() }
            #expect(try fresh.stats()[Self.stat + "lib.gzip.decompressor_library.zlib_data_error"] == nil)
        }

        @Test func streamsFreeTheirDecompressors() throws {
            let backend = try Self.okBackend()
            defer { backend.stop() }
            let before = CompressionHandles.live.load(ordering: .relaxed)
            let proxy = try Self.proxy(backend, [Self.decompressor("zstd")])
            defer { proxy.shutdown() }
            let text = TestCodings.text(count: 100_000)
            for _ in 0..<5 { _ = try Self.post(proxy, TestCodings.zstd(text), headers: ["content-encoding: zstd"]) }
            #expect(backend.lastRequest?.body == text)
            // A client that leaves halfway through its body.
            let c = try proxy.client()
            try c.send(RawClient.request("POST", "/upload", headers: ["content-encoding: zstd", "content-length: 100000"]))
            try c.send(Array(TestCodings.zstd(text).prefix(100)))
            #expect(eventually { CompressionHandles.live.load(ordering: .relaxed) == before + 1 })
            c.abort()
            #expect(eventually { CompressionHandles.live.load(ordering: .relaxed) == before })
        }

        @Test func badConfigIsRefused() throws {
            func refused(_ filter: String, _ needle: String) {
                do {
                    _ = try Bootstrap.load(text: ProxyConfig.yaml(clusters: [("backend", 1)], httpFilters: [filter]))
                    Issue.record("accepted: \(filter)")
                } catch let e as ConfigError {
                    #expect(e.message.contains(needle), "\(e.message)")
                } catch {
                    Issue.record("\(error)")
                }
            }
            refused(Self.decompressor("gzip", libraryExtra: "max_inflate_ratio: 0"), "out of range [1, 1032]")
            refused(Self.decompressor("gzip", libraryExtra: "max_inflate_ratio: 2000"), "out of range [1, 1032]")
            refused(Self.decompressor("zstd", libraryExtra: "dictionaries: [{inline_string: x}]"), "not supported by Pilotfish yet")
            refused(Self.decompressor("br", libraryExtra: "chunk_size: 1"), "out of range [4096, 65536]")
            refused(#"{name: d, typed_config: {"@type": \#(Self.type)}}"#, "missing required field 'decompressor_library'")
            _ = try Bootstrap.load(text: ProxyConfig.yaml(clusters: [("backend", 1)], httpFilters: [
                Self.decompressor("gzip", name: "a", libraryExtra: "window_bits: 9, chunk_size: 65536, max_inflate_ratio: 1032",
                                  "request_direction_config: {common_config: {enabled: {default_value: true, runtime_key: k}, ignore_no_transform_header: true}, advertise_accept_encoding: false}, response_direction_config: {common_config: {ignore_no_transform_header: false}}"),
                Self.decompressor("br", name: "b", libraryExtra: "disable_ring_buffer_reallocation: true, chunk_size: 8192"),
                Self.decompressor("zstd", name: "c", libraryExtra: "chunk_size: 4096"),
            ]))
        }
    }
}
