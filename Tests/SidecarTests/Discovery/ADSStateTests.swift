import Testing
@testable import Sidecar
@testable import SidecarCore

/// The ADS protocol state on its own: which requests a stream sends, what ACKs and NACKs carry, and when the
/// first fetch is over.
struct ADSStateTests {
    let cds = DiscoveryResources.cluster
    let eds = DiscoveryResources.clusterLoadAssignment
    let rds = DiscoveryResources.routeConfiguration

    func state(nodeOnce: Bool = false) -> ADSState {
        ADSState(types: [(cds, true), (eds, false), (rds, false)], nodeOnFirstMessageOnly: nodeOnce)
    }

    @Test func aStreamAsksForTheWildcardTypesAndTheNamedOnesThatHaveNames() {
        var s = state()
        #expect(s.namesChanged(typeURL: rds, to: ["dyn"]) == nil)  // no stream yet: nothing to send
        let first = s.streamStarted()
        #expect(first.map(\.typeURL) == [cds, rds])
        #expect(first[0].resourceNames == [] && first[1].resourceNames == ["dyn"])
        #expect(first.allSatisfy { $0.versionInfo == "" && $0.responseNonce == "" && $0.errorDetail == nil })
        #expect(first.allSatisfy { $0.includeNode })
    }

    @Test func theNodeGoesOnTheFirstRequestOnlyWhenAskedTo() {
        var s = state(nodeOnce: true)
        _ = s.namesChanged(typeURL: rds, to: ["dyn"])
        #expect(s.streamStarted().map(\.includeNode) == [true, false])
        s.streamEnded()
        #expect(s.streamStarted().map(\.includeNode) == [true, false])  // again on each new stream
    }

    @Test func anACKTakesTheVersionAndANACKKeepsTheLastAcceptedOne() {
        var s = state()
        _ = s.streamStarted()
        let ack = s.responded(typeURL: cds, versionInfo: "1", nonce: "n1", error: nil)
        #expect(ack == .init(typeURL: cds, versionInfo: "1", resourceNames: [], responseNonce: "n1", errorDetail: nil,
                             includeNode: true))
        let nack = s.responded(typeURL: cds, versionInfo: "2", nonce: "n2", error: "connect_timeout: bad")
        #expect(nack?.versionInfo == "1" && nack?.responseNonce == "n2" && nack?.errorDetail == "connect_timeout: bad")
        // A new stream says what the proxy has, without a nonce.
        s.streamEnded()
        let again = s.streamStarted()
        #expect(again.first?.versionInfo == "1" && again.first?.responseNonce == "")
    }

    @Test func newNamesAreAskedForWithTheTypesVersionAndNonce() {
        var s = state()
        _ = s.streamStarted()
        _ = s.responded(typeURL: eds, versionInfo: "3", nonce: "n7", error: nil)
        let r = s.namesChanged(typeURL: eds, to: ["a", "b"])
        #expect(r?.resourceNames == ["a", "b"] && r?.versionInfo == "3" && r?.responseNonce == "n7")
        #expect(s.namesChanged(typeURL: eds, to: ["b", "a"]) == nil)  // the same set
        #expect(s.namesChanged(typeURL: eds, to: []) == nil)  // an empty list would be a wildcard
        #expect(s.namesChanged(typeURL: cds, to: ["x"]) == nil)  // wildcard types have no names
    }

    @Test func theFirstFetchIsOverWhenEveryWantedTypeAnswered() {
        var s = state()
        _ = s.namesChanged(typeURL: rds, to: ["dyn"])
        _ = s.streamStarted()
        #expect(!s.initialFetchDone)
        _ = s.responded(typeURL: cds, versionInfo: "1", nonce: "1", error: nil)
        #expect(!s.initialFetchDone)
        // CDS brought an EDS cluster: EDS is wanted now, and awaited.
        _ = s.namesChanged(typeURL: eds, to: ["svc"])
        _ = s.responded(typeURL: rds, versionInfo: "1", nonce: "2", error: nil)
        #expect(!s.initialFetchDone)
        // A NACK ends the first fetch too: the proxy serves without the refused resources, as Envoy does.
        _ = s.responded(typeURL: eds, versionInfo: "1", nonce: "3", error: "bad")
        #expect(s.initialFetchDone)
    }

    // MARK: Delta

    func deltaState() -> ADSState {
        ADSState(types: [(cds, true), (eds, false), (rds, false)], nodeOnFirstMessageOnly: false, delta: true)
    }

    @Test func aDeltaStreamSubscribesAndSaysWhatItHolds() {
        var s = deltaState()
        _ = s.namesChanged(typeURL: eds, to: ["a", "b"])
        let first = s.streamStarted()
        #expect(first.map(\.typeURL) == [cds, eds])
        #expect(first[0].subscribe == [] && first[1].subscribe == ["a", "b"])  // CDS: the legacy wildcard form
        #expect(first.allSatisfy { $0.initialResourceVersions.isEmpty && $0.responseNonce == "" })
        // ACKs carry the nonce only; accepted resources are remembered with their versions.
        let ack = s.responded(typeURL: cds, versionInfo: "", nonce: "n1", error: nil,
                              updated: [("svc", "v1"), ("old", "v1")])
        #expect(ack?.responseNonce == "n1" && ack?.errorDetail == nil && ack?.subscribe == [])
        _ = s.responded(typeURL: cds, versionInfo: "", nonce: "n2", error: nil, updated: [("svc", "v2")], removed: ["old"])
        _ = s.responded(typeURL: eds, versionInfo: "", nonce: "n3", error: nil, updated: [("a", "7"), ("b", "8")])
        // A NACK changes nothing held.
        let nack = s.responded(typeURL: cds, versionInfo: "", nonce: "n4", error: "bad", updated: [("svc", "v3")])
        #expect(nack?.errorDetail == "bad" && nack?.responseNonce == "n4")
        // A new stream sends the versions held: every CDS resource, and the EDS ones still wanted.
        s.streamEnded()
        _ = s.namesChanged(typeURL: eds, to: ["a"])
        let again = s.streamStarted()
        #expect(again[0].initialResourceVersions == ["svc": "v2"])
        #expect(again[1].subscribe == ["a"] && again[1].initialResourceVersions == ["a": "7"])
    }

    @Test func deltaNameChangesSendTheDifference() {
        var s = deltaState()
        _ = s.namesChanged(typeURL: eds, to: ["a", "b"])
        _ = s.streamStarted()
        _ = s.responded(typeURL: eds, versionInfo: "", nonce: "n1", error: nil)
        let r = s.namesChanged(typeURL: eds, to: ["b", "c"])
        #expect(r?.subscribe == ["c"] && r?.unsubscribe == ["a"] && r?.responseNonce == "")
        // Unsubscribing from everything is a request too (no wildcard ambiguity after the first request).
        let none = s.namesChanged(typeURL: eds, to: [])
        #expect(none?.unsubscribe == ["b", "c"] && none?.subscribe == [])
        // A type first wanted on a running stream: its first request subscribes.
        let routes = s.namesChanged(typeURL: rds, to: ["dyn"])
        #expect(routes?.subscribe == ["dyn"] && routes?.typeURL == rds)
    }

    @Test func theBackOffGrowsToThirtySecondsWithJitterBelowIt() {
        #expect(ADSState.backoff(attempt: 0, draw: 0.5) == 0.25)  // below 500 ms
        #expect(ADSState.backoff(attempt: 3, draw: 0.5) == 2)  // below 4 s
        #expect(ADSState.backoff(attempt: 6, draw: 0.999) < 30)  // 32 s capped at 30
        #expect(ADSState.backoff(attempt: 60, draw: 0.5) == 15)  // no overflow however many attempts
        #expect(ADSState.backoff(attempt: 0, draw: 0) == 0.05)  // never a busy loop
    }
}
