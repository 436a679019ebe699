import SidecarCore
import Testing

@testable import Sidecar

/// The connection manager's path options, case by case as Envoy 1.40 answered the same paths (the whole proxy is
/// held to Envoy's answers in scripts/e2e-smuggling's path_* scenarios).
struct PathNormalizationTests {
    @Test func normalizePathRemovesDotSegmentsAndDecodesUnreserved() {
        let n = PathNormalization(normalizePath: true)
        for (path, want) in [
            ("/a/./b/../c", "/a/c"), ("/../../a", "/a"), ("/a/b/.", "/a/b/"), ("/a/b/..", "/a/"),
            ("/a/%2e%2E/b", "/b"), ("/%41%7e%5f%2d", "/A~_-"), ("/a%2fb%3a%20c", "/a%2fb%3a%20c"),
            ("/a\\b", "/a/b"), ("/a/../b?x=/../%41", "/b?x=/../%41"), ("//a//b/", "//a//b/"), ("/", "/"),
            ("/..", "/"), ("/%zz", "/%zz"),
        ] {
            #expect(n.apply(path) == .continue(want), "\(path)")
        }
    }

    @Test func mergeSlashesLeavesTheQueryAndDots() {
        let n = PathNormalization(mergeSlashes: true)
        #expect(n.apply("//a///b//?x=//") == .continue("/a/b/?x=//"))
        #expect(n.apply("/a/../b") == .continue("/a/../b"))
        #expect(PathNormalization(normalizePath: true, mergeSlashes: true).apply("//a/./b//../c") == .continue("/a/b/c"))
    }

    @Test func theOptionsDecodeAndABadActionIsNamed() throws {
        let yaml = ProxyConfig.single(port: 1, hcmExtra: [
            "normalize_path: true", "merge_slashes: true", "path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT",
        ])
        let b = try Bootstrap.load(text: yaml)
        guard case .httpConnectionManager(let hcm) = b.listeners[0].filterChains[0].network else {
            Issue.record("no hcm")
            return
        }
        #expect(hcm.pathNormalization == PathNormalization(normalizePath: true, mergeSlashes: true, escapedSlashes: .redirect))
        do {
            _ = try Bootstrap.load(text: ProxyConfig.single(port: 1, hcmExtra: ["path_with_escaped_slashes_action: UNESCAPE"]))
            Issue.record("a bad action was accepted")
        } catch {
            #expect("\(error)".contains("path_with_escaped_slashes_action"), "\(error)")
            #expect("\(error)".contains("UNESCAPE_AND_FORWARD"), "\(error)")
        }
    }

    @Test func escapedSlashesAreKeptRejectedRedirectedOrForwarded() {
        #expect(PathNormalization().apply("/a%2Fb") == .continue("/a%2Fb"))
        let reject = PathNormalization(escapedSlashes: .reject)
        #expect(reject.apply("/a%2Fb") == .reject)
        #expect(reject.apply("/a%5cb") == .reject)
        #expect(reject.apply("/a?x=%2F") == .continue("/a?x=%2F"))
        let redirect = PathNormalization(normalizePath: true, escapedSlashes: .redirect)
        #expect(redirect.apply("/a%2Fb/../c?x=%2F") == .redirect("/a/c?x=%2F"))
        #expect(redirect.apply("/a/./b") == .continue("/a/b"))
        #expect(PathNormalization(escapedSlashes: .forward).apply("/a%2fb%5Cc") == .continue("/a/b\\c"))
    }
}
