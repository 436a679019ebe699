import Crypto
import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The compressor and decompressor suites run one test at a time, together: the leak checks count codec handles
/// process-wide.
@Suite(.serialized) enum CompressionFilterTests {}

extension CompressionFilterTests {
    /// `envoy.filters.http.compressor` through a real proxy on loopback, against a scripted upstream. The expected
    /// headers and counters are what Envoy 1.40 gives for the same config and exchange.
    @Suite struct CompressorFilterTests {
        static let type = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor"
        static let libraryTypes = [
            "gzip": "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip",
            "br": "type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli",
            "zstd": "type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd",
        ]

        /// An `http_filters` entry: a compressor for `encoding` whose library is named `library`.
        static func compressor(_ encoding: String, name: String = "envoy.filters.http.compressor", library: String = "lib",
                               libraryExtra: String = "", _ extra: String = "") -> String {
            let lib = "{name: \(library), typed_config: {\"@type\": \(libraryTypes[encoding]!)"
                + (libraryExtra.isEmpty ? "" : ", " + libraryExtra) + "}}"
            return "{name: \(name), typed_config: {\"@type\": \(type), compressor_library: \(lib)"
                + (extra.isEmpty ? "" : ", " + extra) + "}}"
        }

        static func proxy(_ backend: ScriptedBackend, _ filters: [String], routes: [String] = [ProxyConfig.catchAll])
            throws -> ProxyHarness
        {
            try ProxyHarness(yaml: ProxyConfig.yaml(routes: routes, clusters: [("backend", backend.port)],
                                                    httpFilters: filters))
        }

        /// A target the standard backend answers: `len` bytes of text, `status`, extra response headers, chunked
        /// (no content-length) when `chunked`.
        static func uri(_ path: String = "/r", len: Int = 1000, status: Int = 200, chunked: Bool = false,
                        headers: [(String, String)] = [("content-type", "text/plain")]) -> String {
            var c = URLComponents()
            c.path = path
            c.queryItems = [URLQueryItem(name: "len", value: String(len)), URLQueryItem(name: "status", value: String(status))]
                + (chunked ? [URLQueryItem(name: "chunked", value: "1")] : [])
                + headers.map { URLQueryItem(name: "h", value: "\($0.0):\($0.1)") }
            // ";" and "+" must survive the query.
            return c.url!.absoluteString.replacingOccurrences(of: "+", with: "%2B")
        }

        /// The standard backend: see `uri`.
        static let respond: @Sendable (ScriptedBackend.Request) -> ScriptedBackend.Response = { request in
            let items = URLComponents(string: "http://x" + request.uri)?.queryItems ?? []
            let len = Int(items.first { $0.name == "len" }?.value ?? "") ?? 1000
            let status = Int(items.first { $0.name == "status" }?.value ?? "") ?? 200
            var headers: [(String, String)] = items.filter { $0.name == "h" }.compactMap { item in
                guard let v = item.value, let colon = v.firstIndex(of: ":") else { return nil }
                return (String(v[..<colon]), String(v[v.index(after: colon)...]))
            }
            let noBody = status == 204 || status == 304
            if !items.contains(where: { $0.name == "chunked" }) && !noBody {
                headers.append(("content-length", String(len)))
            }
            return ScriptedBackend.Response(status: status, headers: headers,
                                            body: noBody ? [] : TestCodings.text(count: len))
        }

        static let stat = "http.ingress_http.compressor."

        // MARK: Negotiation

        @Test func theClientsAcceptEncodingPicksAmongGzipBrotliAndZstd() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [
                Self.compressor("gzip", name: "gzip", library: "gz"),
                Self.compressor("br", name: "brotli", library: "brl"),
                Self.compressor("zstd", name: "zstd", library: "zs"),
            ])
            defer { proxy.shutdown() }
            let text = TestCodings.text(count: 1000)
            let cases: [(String, String?)] = [
                ("gzip", "gzip"), ("br", "br"), ("zstd", "zstd"), ("gzip;q=0.5, br;q=0.8, zstd;q=0.1", "br"),
                // q=0 rules an encoding out even for "*", which then picks the first filter's.
                ("br;q=0, *", "gzip"),
                ("deflate", nil), ("identity", nil),
                // Encodings are compared exactly, as Envoy does.
                ("GZIP", nil),
            ]
            for (accept, expected) in cases {
                let r = try proxy.fetch("GET", Self.uri(), headers: ["accept-encoding: \(accept)"])
                #expect(r.status == 200)
                #expect(r.header("content-encoding") == expected, "accept-encoding: \(accept)")
                #expect(r.header("vary") == "Accept-Encoding")
                if let expected {
                    #expect(r.header("content-length") == nil)
                    #expect(r.header("transfer-encoding") == "chunked")
                    #expect(TestCodings.decode(expected, r.body) == text, "accept-encoding: \(accept)")
                } else {
                    #expect(r.header("content-length") == "1000")
                    #expect(r.body == text)
                }
            }
            let s = try proxy.stats()
            func c(_ lib: String, _ name: String) -> String? { s[Self.stat + lib + "." + name] }
            #expect(c("gz.gzip", "compressed") == "2")
            #expect(c("brl.brotli", "compressed") == "2")
            #expect(c("zs.zstd", "compressed") == "1")
            #expect(c("gz.gzip", "not_compressed") == "6")
            #expect(c("gz.gzip", "header_compressor_used") == "1")
            #expect(c("brl.brotli", "header_compressor_used") == "2")
            #expect(c("zs.zstd", "header_compressor_used") == "1")
            #expect(c("gz.gzip", "header_compressor_overshadowed") == "3")
            #expect(c("brl.brotli", "header_compressor_overshadowed") == "2")
            #expect(c("zs.zstd", "header_compressor_overshadowed") == "3")
            for lib in ["gz.gzip", "brl.brotli", "zs.zstd"] {
                #expect(c(lib, "header_wildcard") == "1")
                #expect(c(lib, "header_not_valid") == "2")
                #expect(c(lib, "header_identity") == "1")
                #expect(c(lib, "no_accept_header") == "0")
            }
            #expect(c("gz.gzip", "total_uncompressed_bytes") == "2000")
            #expect(Int(c("gz.gzip", "total_compressed_bytes") ?? "") ?? 0 > 0)
        }

        @Test func chooseFirstWinsTiesButNotTheWildcard() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [
                Self.compressor("gzip", name: "gzip"),
                Self.compressor("br", name: "brotli", "choose_first: true"),
            ])
            defer { proxy.shutdown() }
            let cases: [(String, String?)] = [
                ("gzip, br", "br"), ("br, gzip", "br"), ("gzip;q=0.5, br;q=0.5", "br"), ("gzip, br;q=0.8", "gzip"),
                ("identity, br", "br"), ("*", "gzip"),
            ]
            for (accept, expected) in cases {
                let r = try proxy.fetch("GET", Self.uri(), headers: ["accept-encoding: \(accept)"])
                #expect(r.header("content-encoding") == expected, "accept-encoding: \(accept)")
            }
        }

        @Test func statsAreNamedAsEnvoyNamesThem() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [
                Self.compressor("gzip", name: "gzip", library: "text", "response_direction_config: {}"),
                Self.compressor("br", name: "brotli", library: "legacy"),
            ])
            defer { proxy.shutdown() }
            _ = try proxy.fetch("GET", Self.uri(), headers: ["accept-encoding: gzip"])
            let names = Set(try proxy.stats().keys.filter { $0.hasPrefix(Self.stat) })
            let responseCounters = ["compressed", "not_compressed", "total_uncompressed_bytes", "total_compressed_bytes",
                                    "content_length_too_small"]
            let headerCounters = ["no_accept_header", "header_identity", "header_wildcard", "header_not_valid",
                                  "header_compressor_used", "header_compressor_overshadowed", "not_compressed_etag"]
            var expected = Set<String>()
            for (lib, response) in [("text.gzip.", "response."), ("legacy.brotli.", "")] {
                for c in responseCounters {
                    expected.insert(Self.stat + lib + response + c)
                    expected.insert(Self.stat + lib + "request." + c)
                }
                for c in headerCounters { expected.insert(Self.stat + lib + c) }
            }
            #expect(names == expected)
            #expect(try proxy.stat(Self.stat + "text.gzip.response.compressed") == 1)
            #expect(try proxy.stat(Self.stat + "text.gzip.header_compressor_used") == 1)
            #expect(try proxy.stat(Self.stat + "legacy.brotli.header_compressor_overshadowed") == 1)
            let prometheus = try proxy.admin("GET", "/stats/prometheus").bodyString
            #expect(prometheus.contains(
                #"envoy_http_compressor_text_gzip_response_compressed{envoy_http_conn_manager_prefix="ingress_http"} 1"#))
        }

        // MARK: What qualifies

        @Test func minContentLengthDefaultsTo30AndAnUnknownLengthQualifies() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [
                Self.compressor("gzip"),
                Self.compressor("zstd", name: "zstd", library: "big", "response_direction_config: {common_config: {min_content_length: 100}}"),
            ])
            defer { proxy.shutdown() }
            let gzip = ["accept-encoding: gzip"]
            let small = try proxy.fetch("GET", Self.uri(len: 29), headers: gzip)
            #expect(small.header("content-encoding") == nil)
            #expect(small.header("vary") == nil)
            #expect(small.header("content-length") == "29")
            #expect(try proxy.fetch("GET", Self.uri(len: 30), headers: gzip).header("content-encoding") == "gzip")
            let chunked = try proxy.fetch("GET", Self.uri(len: 10, chunked: true), headers: gzip)
            #expect(chunked.header("content-encoding") == "gzip")
            #expect(TestCodings.gunzip(chunked.body) == TestCodings.text(count: 10))
            #expect(try proxy.stat(Self.stat + "lib.gzip.content_length_too_small") == 1)

            let zstd = ["accept-encoding: zstd"]
            #expect(try proxy.fetch("GET", Self.uri(len: 99), headers: zstd).header("content-encoding") == nil)
            #expect(try proxy.fetch("GET", Self.uri(len: 100), headers: zstd).header("content-encoding") == "zstd")
            #expect(try proxy.stat(Self.stat + "big.zstd.response.content_length_too_small") == 3)
        }

        @Test func onlyListedContentTypesAreCompressed() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.compressor("gzip")])
            defer { proxy.shutdown() }
            func encoding(_ type: String?) throws -> String? {
                let headers = type.map { [("content-type", $0)] } ?? []
                return try proxy.fetch("GET", Self.uri(headers: headers), headers: ["accept-encoding: gzip"])
                    .header("content-encoding")
            }
            // Envoy's default list, compared without parameters and ignoring case; no content-type qualifies.
            #expect(try encoding("text/html") == "gzip")
            #expect(try encoding("application/json; charset=utf-8") == "gzip")
            #expect(try encoding("TEXT/Plain") == "gzip")
            #expect(try encoding("image/svg+xml") == "gzip")
            #expect(try encoding("application/x-javascript") == "gzip")
            #expect(try encoding(nil) == "gzip")
            #expect(try encoding("image/png") == nil)
            #expect(try encoding("application/octet-stream") == nil)
            #expect(try encoding("text/event-stream") == nil)
            // The only compressor's types exclude the response: the client's header counts as not valid.
            #expect(try proxy.stat(Self.stat + "lib.gzip.header_not_valid") == 3)

            let custom = try Self.proxy(backend, [Self.compressor("gzip", "content_type: [application/x-custom]")])
            defer { custom.shutdown() }
            #expect(try custom.fetch("GET", Self.uri(headers: [("content-type", "text/html")]),
                                     headers: ["accept-encoding: gzip"]).header("content-encoding") == nil)
            #expect(try custom.fetch("GET", Self.uri(headers: [("content-type", "application/x-custom")]),
                                     headers: ["accept-encoding: gzip"]).header("content-encoding") == "gzip")
        }

        @Test func strongETagsAreDroppedOrWeakened() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let gzip = ["accept-encoding: gzip"]
            let plain = try Self.proxy(backend, [Self.compressor("gzip")])
            defer { plain.shutdown() }
            let strong = try plain.fetch("GET", Self.uri(headers: [("etag", "\"v1\"")]), headers: gzip)
            #expect(strong.header("content-encoding") == "gzip")
            #expect(strong.header("etag") == nil)
            let weak = try plain.fetch("GET", Self.uri(headers: [("etag", "W/\"v1\"")]), headers: gzip)
            #expect(weak.header("etag") == "W/\"v1\"")
            // Uncompressed responses keep theirs.
            #expect(try plain.fetch("GET", Self.uri(headers: [("etag", "\"v1\"")])).header("etag") == "\"v1\"")

            let weaken = try Self.proxy(backend, [Self.compressor("gzip", "response_direction_config: {weaken_etag_on_compress: true}")])
            defer { weaken.shutdown() }
            let weakened = try weaken.fetch("GET", Self.uri(headers: [("etag", "\"v1\"")]), headers: gzip)
            #expect(weakened.header("content-encoding") == "gzip")
            #expect(weakened.header("etag") == "W/\"v1\"")

            let disable = try Self.proxy(backend, [Self.compressor("gzip", "response_direction_config: {disable_on_etag_header: true}")])
            defer { disable.shutdown() }
            let kept = try disable.fetch("GET", Self.uri(headers: [("etag", "\"v1\"")]), headers: gzip)
            #expect(kept.header("content-encoding") == nil)
            #expect(kept.header("etag") == "\"v1\"")
            #expect(kept.header("vary") == nil)
            #expect(try disable.stat(Self.stat + "lib.gzip.not_compressed_etag") == 1)
            #expect(try disable.stat(Self.stat + "lib.gzip.header_compressor_used") == 1)
            #expect(try disable.fetch("GET", Self.uri(), headers: gzip).header("content-encoding") == "gzip")
        }

        @Test func varyIsAddedToEveryResponseThatCouldBeCompressed() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.compressor("gzip")])
            defer { proxy.shutdown() }
            let noAccept = try proxy.fetch("GET", Self.uri())
            #expect(noAccept.header("content-encoding") == nil)
            #expect(noAccept.header("vary") == "Accept-Encoding")
            #expect(try proxy.stat(Self.stat + "lib.gzip.no_accept_header") == 1)
            let origin = try proxy.fetch("GET", Self.uri(headers: [("content-type", "text/plain"), ("vary", "Origin")]),
                                         headers: ["accept-encoding: gzip"])
            #expect(origin.headerValues("vary") == ["Origin, Accept-Encoding"])
            let already = try proxy.fetch("GET", Self.uri(headers: [("vary", "Origin,Accept-Encoding")]),
                                          headers: ["accept-encoding: gzip"])
            #expect(already.headerValues("vary") == ["Origin,Accept-Encoding"])
            // Envoy compares the token exactly.
            let lower = try proxy.fetch("GET", Self.uri(headers: [("vary", "accept-encoding")]), headers: ["accept-encoding: gzip"])
            #expect(lower.headerValues("vary") == ["accept-encoding, Accept-Encoding"])
            let image = try proxy.fetch("GET", Self.uri(headers: [("content-type", "image/png")]),
                                        headers: ["accept-encoding: gzip"])
            #expect(image.header("vary") == nil)
        }

        @Test func headResponsesAreNotCompressedButGetVary() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.compressor("gzip")])
            defer { proxy.shutdown() }
            let c = try proxy.client()
            try c.send(RawClient.request("HEAD", Self.uri(), headers: ["accept-encoding: gzip"]))
            let r = try c.readResponse(head: true)
            #expect(r.status == 200)
            #expect(r.header("content-encoding") == nil)
            #expect(r.header("content-length") == "1000")
            #expect(r.header("vary") == "Accept-Encoding")
            #expect(try proxy.stat(Self.stat + "lib.gzip.not_compressed") == 1)
            // The headers end the stream: Accept-Encoding is not even looked at.
            #expect(try proxy.stat(Self.stat + "lib.gzip.header_compressor_used") == 0)
            // The connection stays usable.
            try c.send(RawClient.request("GET", Self.uri(), headers: ["accept-encoding: gzip"]))
            #expect(try c.readResponse().header("content-encoding") == "gzip")
        }

        @Test func encodedNoTransformBodilessAndListedStatusesAreLeftAlone() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.compressor("gzip", "response_direction_config: {uncompressible_response_codes: [206]}")])
            defer { proxy.shutdown() }
            let gzip = ["accept-encoding: gzip"]
            let encoded = try proxy.fetch("GET", Self.uri(headers: [("content-encoding", "br")]), headers: gzip)
            #expect(encoded.header("content-encoding") == "br")
            #expect(encoded.header("content-length") == "1000")
            #expect(encoded.header("vary") == nil)
            let noTransform = try proxy.fetch("GET", Self.uri(headers: [("cache-control", "max-age=3, No-Transform")]), headers: gzip)
            #expect(noTransform.header("content-encoding") == nil)
            #expect(noTransform.header("vary") == nil)
            let partial = try proxy.fetch("GET", Self.uri(status: 206), headers: gzip)
            #expect(partial.status == 206)
            #expect(partial.header("content-encoding") == nil)
            #expect(partial.header("vary") == nil)
            // Other statuses are compressed like 200.
            #expect(try proxy.fetch("GET", Self.uri(status: 404), headers: gzip).header("content-encoding") == "gzip")
            #expect(try proxy.fetch("GET", Self.uri(status: 500), headers: gzip).header("content-encoding") == "gzip")
            let noContent = try proxy.fetch("GET", Self.uri(status: 204), headers: gzip)
            #expect(noContent.status == 204)
            #expect(noContent.header("content-encoding") == nil)
            #expect(noContent.header("vary") == "Accept-Encoding")
            #expect(try proxy.stat(Self.stat + "lib.gzip.response.compressed") == 2)
            #expect(try proxy.stat(Self.stat + "lib.gzip.response.not_compressed") == 4)
        }

        @Test func localRepliesAreCompressedToo() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let body = String(repeating: "not here, not now. ", count: 10)
            let routes = [#"{match: {prefix: "/"}, direct_response: {status: 503, body: {inline_string: "\#(body)"}}}"#]
            let proxy = try Self.proxy(backend, [Self.compressor("gzip")], routes: routes)
            defer { proxy.shutdown() }
            let r = try proxy.fetch("GET", "/x", headers: ["accept-encoding: gzip"])
            #expect(r.status == 503)
            #expect(r.header("content-encoding") == "gzip")
            #expect(TestCodings.gunzip(r.body) == Array(body.utf8))
        }

        // MARK: Requests, routes

        @Test func requestBodiesAreCompressedWithRequestDirectionConfig() throws {
            let backend = try ScriptedBackend { _ in ScriptedBackend.Response(headers: [("content-length", "2")], body: Array("ok".utf8)) }
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.compressor("gzip", "request_direction_config: {}")])
            defer { proxy.shutdown() }
            let text = TestCodings.text(count: 5000)
            let c = try proxy.client()
            try c.send(RawClient.request("POST", "/upload", headers: ["content-type: text/plain", "content-length: 5000"]))
            try c.send(text)
            #expect(try c.readResponse().status == 200)
            let seen = try #require(backend.lastRequest)
            #expect(seen.header("content-encoding") == "gzip")
            #expect(seen.header("content-length") == nil)
            #expect(seen.header("transfer-encoding") == "chunked")
            #expect(TestCodings.gunzip(seen.body) == text)

            try c.send(RawClient.request("POST", "/small", headers: ["content-type: text/plain", "content-length: 10"]) + "0123456789")
            #expect(try c.readResponse().status == 200)
            #expect(backend.lastRequest?.header("content-encoding") == nil)
            #expect(backend.lastRequest?.body == Array("0123456789".utf8))
            try c.send(RawClient.request("GET", "/nobody"))
            #expect(try c.readResponse().status == 200)
            // A chunked request with trailers: the compressed body ends before them.
            let part = Array(text[0..<2000])
            try c.send(RawClient.request("POST", "/trailers", headers: ["content-type: text/plain", "transfer-encoding: chunked"])
                + String(part.count, radix: 16) + "\r\n" + String(decoding: part, as: UTF8.self) + "\r\n0\r\nx-sum: 1\r\n\r\n")
            #expect(try c.readResponse().status == 200)
            let chunked = try #require(backend.lastRequest)
            #expect(chunked.header("content-encoding") == "gzip")
            #expect(TestCodings.gunzip(chunked.body) == part)
            #expect(chunked.trailers.contains { $0.name == "x-sum" && $0.value == "1" })
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.compressed") == 2)
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.content_length_too_small") == 1)
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.not_compressed") == 2)
            #expect(try proxy.stat(Self.stat + "lib.gzip.request.total_uncompressed_bytes") == 7000)
            // Without request_direction_config requests are left alone.
            let off = try Self.proxy(backend, [Self.compressor("gzip")])
            defer { off.shutdown() }
            let c2 = try off.client()
            try c2.send(RawClient.request("POST", "/upload", headers: ["content-type: text/plain", "content-length: 5000"]))
            try c2.send(text)
            _ = try c2.readResponse()
            #expect(backend.lastRequest?.header("content-encoding") == nil)
            #expect(backend.lastRequest?.body == text)
        }

        @Test func acceptEncodingRemovalAndPerRouteOverrides() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let perRoute = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute"
            let routes = [
                #"{match: {prefix: "/keep"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.compressor: {"@type": \#(perRoute), overrides: {response_direction_config: {remove_accept_encoding_header: false}}}}}"#,
                #"{match: {prefix: "/off"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.compressor: {"@type": \#(perRoute), disabled: true}}}"#,
                #"{match: {prefix: "/gone"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.compressor: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}}"#,
                ProxyConfig.catchAll,
            ]
            let proxy = try Self.proxy(backend, [Self.compressor("gzip", "response_direction_config: {remove_accept_encoding_header: true}")],
                                       routes: routes)
            defer { proxy.shutdown() }
            let gzip = ["accept-encoding: gzip"]
            let plain = try proxy.fetch("GET", Self.uri("/x"), headers: gzip)
            #expect(plain.header("content-encoding") == "gzip")
            #expect(backend.lastRequest?.header("accept-encoding") == nil)
            let keep = try proxy.fetch("GET", Self.uri("/keep"), headers: gzip)
            #expect(keep.header("content-encoding") == "gzip")
            #expect(backend.lastRequest?.header("accept-encoding") == "gzip")
            let off = try proxy.fetch("GET", Self.uri("/off"), headers: gzip)
            #expect(off.header("content-encoding") == nil)
            #expect(off.header("vary") == nil)
            #expect(backend.lastRequest?.header("accept-encoding") == "gzip")
            let gone = try proxy.fetch("GET", Self.uri("/gone"), headers: gzip)
            #expect(gone.header("content-encoding") == nil)
            #expect(try proxy.stat(Self.stat + "lib.gzip.response.compressed") == 2)
            // A disabled route counts not_compressed; a filter left out of the route counts nothing.
            #expect(try proxy.stat(Self.stat + "lib.gzip.response.not_compressed") == 1)
        }

        @Test func aDisabledFilterCanBeTurnedOnPerRoute() throws {
            let backend = try ScriptedBackend(Self.respond)
            defer { backend.stop() }
            let perRoute = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute"
            let routes = [
                #"{match: {prefix: "/on"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.compressor: {"@type": \#(perRoute), overrides: {response_direction_config: {}}}}}"#,
                ProxyConfig.catchAll,
            ]
            let proxy = try Self.proxy(backend, [Self.compressor(
                "gzip", "response_direction_config: {common_config: {enabled: {default_value: false, runtime_key: gzip_on}}}")],
                routes: routes)
            defer { proxy.shutdown() }
            #expect(try proxy.fetch("GET", Self.uri("/x"), headers: ["accept-encoding: gzip"]).header("content-encoding") == nil)
            #expect(try proxy.fetch("GET", Self.uri("/on"), headers: ["accept-encoding: gzip"]).header("content-encoding") == "gzip")
        }

        // MARK: Streaming

        /// 50 MB of text through gzip (8 MB through brotli and zstd) in 64 KiB upstream chunks: the client's body
        /// decodes to exactly what the upstream sent, and every codec handle is freed afterwards.
        @Test(arguments: [("gzip", 800), ("br", 128), ("zstd", 128)])
        func bigBodiesStreamThroughAndDecodeToTheOriginal(encoding: String, chunks: Int) throws {
            let chunkSize = 64 * 1024
            let base = TestCodings.text(count: chunkSize)
            @Sendable func chunk(_ i: Int) -> [UInt8] {
                var c = base
                // Every chunk differs a little, so no two are the same.
                withUnsafeBytes(of: UInt64(i).bigEndian) { c.replaceSubrange(0..<8, with: $0) }
                return c
            }
            let backend = try ScriptedBackend { _ in
                ScriptedBackend.Response(headers: [("content-type", "text/plain")], chunks: chunks, chunk: chunk)
            }
            defer { backend.stop() }
            let before = CompressionHandles.live.load(ordering: .relaxed)
            let proxy = try Self.proxy(backend, [Self.compressor(encoding)])
            defer { proxy.shutdown() }
            let c = try proxy.client(timeout: 30)
            try c.send(RawClient.request("GET", "/big", headers: ["accept-encoding: \(encoding)"]))
            let r = try c.readResponse()
            #expect(r.header("content-encoding") == encoding)
            #expect(r.body.count < chunks * chunkSize / 2)
            let decoded = try #require(TestCodings.decode(encoding, r.body))
            #expect(decoded.count == chunks * chunkSize)
            var expected = SHA256()
            for i in 0..<chunks { expected.update(data: chunk(i)) }
            #expect(SHA256.hash(data: decoded) == expected.finalize())
            let lib = ["gzip": "gzip", "br": "brotli", "zstd": "zstd"][encoding]!
            #expect(try proxy.stat(Self.stat + "lib.\(lib).total_uncompressed_bytes") == chunks * chunkSize)
            #expect(try proxy.stat(Self.stat + "lib.\(lib).total_compressed_bytes") == r.body.count)
            c.close()
            #expect(eventually { CompressionHandles.live.load(ordering: .relaxed) == before })
        }

        /// gzip and brotli flush what they took at every chunk, so the client has it while the upstream pauses; zstd,
        /// as in Envoy, only continues its frame and gives nothing out until a block fills or the stream ends.
        @Test(arguments: [("gzip", "gzip", true), ("br", "brotli", true), ("zstd", "zstd", false)])
        func chunksAreFlushedAsTheyComeExceptWithZstd(encoding: String, lib: String, flushes: Bool) throws {
            let backend = try ScriptedBackend { _ in
                var r = ScriptedBackend.Response(headers: [("content-type", "text/plain")], chunks: 2) {
                    TestCodings.text(count: 10_000, seed: UInt64($0))
                }
                r.gate = { $0 < 1 }
                return r
            }
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.compressor(encoding)])
            defer { proxy.shutdown() }
            let c = try proxy.client()
            try c.send(RawClient.request("GET", "/slow", headers: ["accept-encoding: \(encoding)"]))
            let uncompressed = Self.stat + "lib.\(lib).total_uncompressed_bytes"
            #expect(eventually { (try? proxy.stat(uncompressed)) == 10_000 })
            let compressed = try proxy.stat(Self.stat + "lib.\(lib).total_compressed_bytes") ?? 0
            #expect((compressed > 0) == flushes)
            backend.resume()
            let r = try c.readResponse()
            let expected = TestCodings.text(count: 10_000, seed: 0) + TestCodings.text(count: 10_000, seed: 1)
            #expect(TestCodings.decode(encoding, r.body) == expected)
        }

        @Test func trailersFollowTheCompressedBodysEnd() throws {
            let text = TestCodings.text(count: 3000)
            let backend = try ScriptedBackend { _ in
                ScriptedBackend.Response(headers: [("content-type", "text/plain")], body: text, trailers: [("x-checksum", "abc")])
            }
            defer { backend.stop() }
            let proxy = try Self.proxy(backend, [Self.compressor("gzip"), Self.compressor("br", name: "brotli", library: "b")])
            defer { proxy.shutdown() }
            for encoding in ["gzip", "br"] {
                let r = try proxy.fetch("GET", "/t", headers: ["accept-encoding: \(encoding)"])
                #expect(r.header("content-encoding") == encoding)
                #expect(TestCodings.decode(encoding, r.body) == text)
            }
        }

        @Test func aClientLeavingMidStreamFreesTheCompressor() throws {
            let backend = try ScriptedBackend { _ in
                var r = ScriptedBackend.Response(headers: [("content-type", "text/plain")], chunks: 3) { _ in
                    TestCodings.text(count: 50_000)
                }
                r.gate = { $0 < 1 }
                return r
            }
            defer { backend.stop() }
            let before = CompressionHandles.live.load(ordering: .relaxed)
            let proxy = try Self.proxy(backend, [Self.compressor("br")])
            defer { proxy.shutdown() }
            let c = try proxy.client()
            try c.send(RawClient.request("GET", "/slow", headers: ["accept-encoding: br"]))
            #expect(eventually { CompressionHandles.live.load(ordering: .relaxed) == before + 1 })
            c.abort()
            #expect(eventually { CompressionHandles.live.load(ordering: .relaxed) == before })
            backend.resume()
        }

        // MARK: Config

        @Test func unsupportedAndInvalidFieldsAreRefused() throws {
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
            refused(Self.compressor("gzip", "response_direction_config: {status_header_enabled: true}"),
                    "not supported by Pilotfish yet")
            refused(Self.compressor("zstd", libraryExtra: "dictionary: {inline_string: abc}"), "not supported by Pilotfish yet")
            refused(Self.compressor("gzip", libraryExtra: "window_bits: 8"), "out of range [9, 15]")
            refused(Self.compressor("gzip", libraryExtra: "chunk_size: 100"), "out of range [4096, 65536]")
            refused(Self.compressor("br", libraryExtra: "quality: 12"), "out of range [0, 11]")
            refused(Self.compressor("gzip", libraryExtra: "compression_level: FASTEST"), "unknown value 'FASTEST'")
            refused(Self.compressor("gzip", "response_direction_config: {uncompressible_response_codes: [199]}"),
                    "out of range [200, 599]")
            refused(#"{name: c, typed_config: {"@type": \#(Self.type)}}"#, "missing required field 'compressor_library'")
            refused(#"{name: c, typed_config: {"@type": \#(Self.type), compressor_library: {name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip}}}}"#,
                    "is not supported")
            // Every documented library field is taken.
            _ = try Bootstrap.load(text: ProxyConfig.yaml(clusters: [("backend", 1)], httpFilters: [
                Self.compressor("gzip", name: "a", libraryExtra: "memory_level: 9, compression_level: BEST_SPEED, compression_strategy: RLE, window_bits: 15, chunk_size: 8192"),
                Self.compressor("br", name: "b", libraryExtra: "quality: 11, window_bits: 24, input_block_bits: 16, disable_literal_context_modeling: true, encoder_mode: TEXT, chunk_size: 65536"),
                Self.compressor("zstd", name: "c", libraryExtra: "compression_level: 19, enable_checksum: true, strategy: BTULTRA2, chunk_size: 4096"),
            ]))
        }
    }
}
