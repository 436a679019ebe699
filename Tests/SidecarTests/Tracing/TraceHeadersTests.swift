import NIOHTTP1
import Testing

@testable import SidecarCore
@testable import SidecarTracing

/// Reading a caller's trace context: W3C `traceparent` and B3, valid and malformed.
@Suite struct TraceHeadersTests {
    @Test func w3cTraceparent() throws {
        let h = HTTPHeaders([("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                             ("tracestate", "a=1"), ("tracestate", "b=2")])
        let c = try #require(TraceHeaders.w3c(h))
        #expect(c.trace == TraceID(high: 0x0af7_6519_16cd_43dd, low: 0x8448_eb21_1c80_319c))
        #expect(c.spanID == 0xb7ad_6b71_6920_3331)
        #expect(c.sampled == true)
        #expect(c.traceState == "a=1,b=2")
        #expect(c.format == .w3c)
        let unsampled = HTTPHeaders([("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")])
        #expect(TraceHeaders.w3c(unsampled)?.sampled == false)
    }

    @Test(arguments: [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  // no flags
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  // version ff
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  // zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  // zero span id
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  // upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",  // short span id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  // extra field in version 00
        "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",  // not hex
    ])
    func malformedTraceparentIsNoContext(_ value: String) {
        #expect(TraceHeaders.w3c(HTTPHeaders([("traceparent", value)])) == nil)
    }

    @Test func laterVersionsMayCarryMoreFields() {
        let h = HTTPHeaders([("traceparent", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future")])
        #expect(TraceHeaders.w3c(h)?.spanID == 0xb7ad_6b71_6920_3331)
    }

    @Test func b3MultiHeader() throws {
        let h = HTTPHeaders([("x-b3-traceid", "463ac35c9f6413ad"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
                             ("x-b3-parentspanid", "0020000000000001"), ("x-b3-sampled", "0")])
        let (context, sampledOnly) = TraceHeaders.b3(h)
        let c = try #require(context)
        #expect(c.trace == TraceID(high: 0, low: 0x463a_c35c_9f64_13ad))
        #expect(c.spanID == 0xa2fb_4a1d_1a96_d312)
        #expect(c.parentID == 0x0020_0000_0000_0001)
        #expect(c.sampled == false)
        #expect(sampledOnly == false)
        #expect(c.format == .b3Multi)
        // x-b3-flags: 1 (debug) samples whatever x-b3-sampled says.
        var debug = h
        debug.add(name: "x-b3-flags", value: "1")
        #expect(TraceHeaders.b3(debug).context?.sampled == true)
    }

    @Test func b3SingleHeader() throws {
        let full = TraceHeaders.b3(HTTPHeaders([("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90")]))
        let c = try #require(full.context)
        #expect(c.trace == TraceID(high: 0x80f1_98ee_5634_3ba8, low: 0x64fe_8b2a_57d3_eff7))
        #expect(c.sampled == true)
        #expect(c.parentID == 0x05e3_ac9a_4f6e_3b90)
        #expect(c.format == .b3Single)
        #expect(TraceHeaders.b3(HTTPHeaders([("b3", "0")])).context == nil)
        #expect(TraceHeaders.b3(HTTPHeaders([("b3", "0")])).sampledOnly == false)
        #expect(TraceHeaders.b3(HTTPHeaders([("b3", "80f198ee56343ba8-e457b5a2e4d86bd1")])).context?.sampled == nil)
        #expect(TraceHeaders.b3(HTTPHeaders([("b3", "80f198ee56343ba8-e457b5a2e4d86bd1-x")])).context == nil)
        #expect(TraceHeaders.b3(HTTPHeaders([("b3", "80f198ee56343ba8")])).context == nil)
    }

    @Test func malformedB3IsNoContextButKeepsTheSamplingDecision() {
        let h = HTTPHeaders([("x-b3-traceid", "xyz"), ("x-b3-spanid", "a2fb4a1d1a96d312"), ("x-b3-sampled", "1")])
        let (context, sampled) = TraceHeaders.b3(h)
        #expect(context == nil)
        #expect(sampled == true)
    }

    /// The one-pass check that lets requests without B3 skip five lookups: any case, exact names only.
    @Test func b3HeadersAreFoundInAnyCase() {
        for name in ["b3", "B3", "x-b3-traceid", "X-B3-Sampled", "x-b3-anything"] {
            #expect(TraceHeaders.hasB3Header(HTTPHeaders([("host", "a"), (name, "1")])), "\(name)")
        }
        for name in ["b33", "x-b3", "x-b3-", "xb3-traceid", "x-c3-traceid", "b"] {
            #expect(!TraceHeaders.hasB3Header(HTTPHeaders([("host", "a"), (name, "1")])), "\(name)")
        }
        // Upper-case names still parse (the lookups are case-insensitive).
        let (context, _) = TraceHeaders.b3(HTTPHeaders([("X-B3-TraceId", "0000000000000001"),
                                                        ("X-B3-SpanId", "0000000000000002")]))
        #expect(context?.spanID == 2)
    }

    @Test func traceHexWritesFixedWidthLowerCaseDigits() {
        #expect(TraceHex.encode(0x0af7_6519_16cd_43dd) == "0af7651916cd43dd")
        #expect(TraceHex.encode(0) == "0000000000000000")
        #expect(TraceHex.encode(UInt64.max) == "ffffffffffffffff")
        #expect(TraceHex.encode(trace: TraceID(high: 0x0af7_6519_16cd_43dd, low: 0x8448_eb21_1c80_319c))
                == "0af7651916cd43dd8448eb211c80319c")
        #expect(TraceHex.encode(trace: TraceID(high: 0, low: 0xb7ad_6b71_6920_3331)) == "b7ad6b7169203331")
        #expect(TraceHex.encode(trace: TraceID(high: 0, low: 0xb7ad_6b71_6920_3331), wide: true)
                == "0000000000000000b7ad6b7169203331")
    }
}
