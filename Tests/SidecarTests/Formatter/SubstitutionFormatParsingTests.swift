import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The parser follows Envoy 1.40's `SubstitutionFormatParser`; the refusals below are the ones Envoy 1.40 gives
/// (messages observed with the real binary), plus the commands Pilotfish does not implement.
@Suite struct SubstitutionFormatParsingTests {
    static func pieces(_ text: String) throws -> [SubstitutionFormat.Piece] {
        try SubstitutionFormat(parsing: text).pieces
    }

    static func refusal(_ text: String) -> String? {
        do {
            _ = try SubstitutionFormat(parsing: text)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func textWithoutCommandsIsALiteralAndPercentPercentIsAPercentSign() throws {
        let f = try SubstitutionFormat(parsing: "100%% sure")
        #expect(f.literal == "100% sure")
        #expect(try SubstitutionFormat(parsing: "").literal == "")
        #expect(try SubstitutionFormat(parsing: "%PROTOCOL%").literal == nil)
    }

    @Test func commandsSplitTheTextIntoPieces() throws {
        #expect(try Self.pieces("a%PROTOCOL%b%%c") == [.text("a"), .command(.protocolName), .text("b%c")])
        #expect(try Self.pieces("%HOSTNAME%%ROUTE_NAME%") == [.command(.hostname), .command(.routeName)])
    }

    @Test func headerCommandsTakeAnAlternativeAndAMaximumLength() throws {
        #expect(try Self.pieces("%REQ(X-A?x-b):12%") == [
            .command(.requestHeader(HeaderLookup(name: "x-a", alternative: "x-b", maxLength: 12)))
        ])
        #expect(try Self.pieces("%RESP(:status)%") == [
            .command(.responseHeader(HeaderLookup(name: ":status", alternative: nil, maxLength: nil)))
        ])
        #expect(try Self.pieces("%TRAILER(grpc-status):0%") == [
            .command(.responseTrailer(HeaderLookup(name: "grpc-status", alternative: nil, maxLength: 0)))
        ])
    }

    @Test func theArgumentEndsAtTheFirstParenthesisAfterWhichTheCommandCloses() throws {
        // Envoy's lazy `\((.*?)\)` followed by `(:N)?%`: `)` inside the START_TIME format is kept.
        #expect(try Self.pieces("%START_TIME((%s))%") == [.command(.startTime(try StartTimeFormat(parsing: "(%s)")))])
        #expect(try Self.pieces("%START_TIME(%H:%M)%x") == [
            .command(.startTime(try StartTimeFormat(parsing: "%H:%M"))), .text("x"),
        ])
    }

    @Test func malformedCommandsAreRefusedWithTheirPosition() {
        #expect(Self.refusal("abc%") == "no valid command at position 3 (a literal '%' is written '%%')")
        #expect(Self.refusal("%REQ(x):abc%")?.hasPrefix("no valid command at position 0") == true)
        #expect(Self.refusal("%REQ(x)y%")?.hasPrefix("no valid command at position 0") == true)
        #expect(Self.refusal("%req(x)%")?.hasPrefix("no valid command at position 0") == true)
        #expect(Self.refusal("%RESP(x)%%")?.hasPrefix("no valid command at position 9") == true)
        #expect(Self.refusal("%REQ(x")?.hasPrefix("no valid command") == true)
    }

    @Test func eachCommandTakesOnlyTheArgumentsEnvoyAllows() {
        #expect(Self.refusal("%REQ%") == "REQ requires parameters")
        #expect(Self.refusal("%REQ()%") == "REQ requires parameters")
        #expect(Self.refusal("%PROTOCOL(x)%") == "PROTOCOL does not take any parameters or length")
        #expect(Self.refusal("%PROTOCOL:3%") == "PROTOCOL does not take any parameters or length")
        #expect(Self.refusal("%DURATION(x)%") == "DURATION does not take any parameters or length")
        #expect(Self.refusal("%START_TIME:3%") == "START_TIME does not allow length to be specified.")
        #expect(Self.refusal("%REQ(a?b?c)%") == "More than 1 alternative header specified in token: a?b?c")
        #expect(Self.refusal("%REQ(a)b)%")?.contains("invalid header name 'a)b'") == true)
        // `%PROTOCOL%:3` is the command and then the text ":3".
        #expect(Self.refusal("%PROTOCOL%:3") == nil)
    }

    @Test func commandsPilotfishDoesNotImplementAreRefusedByName() {
        #expect(Self.refusal("%DOWNSTREAM_PEER_SUBJECT%")
            == "format command '%DOWNSTREAM_PEER_SUBJECT%' is not supported by Pilotfish yet")
        #expect(Self.refusal("%DYNAMIC_METADATA(a:b)%")
            == "format command '%DYNAMIC_METADATA%' is not supported by Pilotfish yet")
        #expect(Self.refusal("%FOO%") == "unknown format command '%FOO%' (Envoy: Not supported field in StreamInfo)")
        #expect(Self.refusal("%START_TIME(%Q)%") == "START_TIME specifier '%Q' is not supported by Pilotfish")
    }

    @Test func requestWithoutQueryIsOnlyForFormatsThatAskForTheExtension() throws {
        #expect(Self.refusal("%REQ_WITHOUT_QUERY(:path)%")?.contains("envoy.formatter.req_without_query") == true)
        let f = try SubstitutionFormat(parsing: "%REQ_WITHOUT_QUERY(:path):5%", options: .requestWithoutQuery)
        #expect(f.commands == [.requestHeaderWithoutQuery(HeaderLookup(name: ":path", alternative: nil, maxLength: 5))])
    }

    @Test func headerValueErrorsNameTheConfigPathLineAndCommand() {
        let yaml = """
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: c }
                response_headers_to_add:
                - header: { key: x-ok, value: "%RESPONSE_CODE%" }
                - header: { key: x-bad, value: "%UPSTREAM_REMOTE_ADDRESS%" }
            """
        #expect {
            try RouteConfiguration.load(text: yaml)
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.path == "virtual_hosts[0].routes[0].response_headers_to_add[1].header.value" && e.line == 9
                && e.message == "format '%UPSTREAM_REMOTE_ADDRESS%': format command '%UPSTREAM_REMOTE_ADDRESS%' is "
                    + "not supported by Pilotfish yet"
        }
    }
}
