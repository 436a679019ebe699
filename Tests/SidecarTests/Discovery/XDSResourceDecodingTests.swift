import Foundation
import SwiftProtobuf
import Testing
import XDSMessages
@testable import Sidecar
@testable import SidecarCore

/// Resources from a control plane: protobuf in, the file decoder's typed values out, and nothing the subset lacks
/// dropped without a word.
struct XDSResourceDecodingTests {
    func edsCluster(_ name: String = "svc") -> Envoy_Config_Cluster_V3_Cluster {
        var c = Envoy_Config_Cluster_V3_Cluster()
        c.name = name
        c.type = .eds
        c.connectTimeout = Google_Protobuf_Duration(seconds: 2)
        c.edsClusterConfig.edsConfig.ads = Envoy_Config_Core_V3_AggregatedConfigSource()
        c.edsClusterConfig.edsConfig.resourceApiVersion = .v3
        return c
    }

    func decode(_ resources: [Google_Protobuf_Any]) throws -> DiscoveryFile<Cluster> {
        try XDSResourceDecoding.decode(resources, versionInfo: "7", typeURL: DiscoveryResources.cluster, what: "CDS",
                                       decode: Cluster.decode, name: \.name)
    }

    @Test func aClusterBecomesTheSameValueAFileGives() throws {
        let file = try decode([try Google_Protobuf_Any(message: edsCluster())])
        #expect(file.versionInfo == "7")
        let c = try #require(file.resources.first)
        #expect(c.name == "svc" && c.type == .EDS && c.connectTimeout == .seconds(2))
        #expect(c.eds == EDSClusterConfig(serviceName: "svc", source: .ads))
    }

    @Test func aFieldTheSubsetLacksIsRefusedByNumberAndMessage() throws {
        // Field 49 (track_cluster_stats), length-delimited and empty: on the wire, unknown to the subset.
        var bytes = try edsCluster().serializedBytes() as Data
        bytes.append(contentsOf: [0x8a, 0x03, 0x00])
        let any = Google_Protobuf_Any.with { $0.typeURL = DiscoveryResources.cluster; $0.value = bytes }
        let error = try #require(throws: ConfigError.self) { try decode([any]) }
        #expect(error.path == "resources[0]")
        #expect(error.message.contains("envoy.config.cluster.v3.Cluster field number 49 is not supported"))
    }

    @Test func anUnknownFieldDeepInsideIsNamedByItsPath() throws {
        var c = edsCluster()
        var la = Envoy_Config_Endpoint_V3_ClusterLoadAssignment()
        la.clusterName = "svc"
        var locality = Envoy_Config_Endpoint_V3_LocalityLbEndpoints()
        var endpoint = try Envoy_Config_Endpoint_V3_LbEndpoint().serializedBytes() as Data
        endpoint.append(contentsOf: [0x30, 0x01])  // field 6, varint
        locality.lbEndpoints = [try Envoy_Config_Endpoint_V3_LbEndpoint(serializedBytes: endpoint)]
        la.endpoints = [locality]
        c.loadAssignment = la
        let error = try #require(throws: ConfigError.self) { try decode([try Google_Protobuf_Any(message: c)]) }
        #expect(error.path == "resources[0].load_assignment.endpoints[0].lb_endpoints[0]")
        #expect(error.message.contains("envoy.config.endpoint.v3.LbEndpoint field number 6"))
    }

    @Test func aTypedConfigOfATypePilotfishDoesNotRunIsRefused() throws {
        var c = edsCluster()
        c.transportSocket.name = "envoy.transport_sockets.quic"
        c.transportSocket.typedConfig = Google_Protobuf_Any.with {
            $0.typeURL = "type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicUpstreamTransport"
        }
        let error = try #require(throws: ConfigError.self) { try decode([try Google_Protobuf_Any(message: c)]) }
        #expect(error.path == "resources[0].transport_socket.typed_config")
        #expect(error.message.contains("unsupported type"))
    }

    @Test func aResourceOfAnotherTypeAndAFieldTheDecoderRefusesAreErrors() throws {
        let other = try Google_Protobuf_Any(message: Envoy_Config_Route_V3_RouteConfiguration.with { $0.name = "r" })
        let wrong = try #require(throws: ConfigError.self) { try decode([other]) }
        #expect(wrong.message.contains("must be a type.googleapis.com/envoy.config.cluster.v3.Cluster"))
        var c = edsCluster()
        c.connectTimeout = Google_Protobuf_Duration(seconds: 0)
        let zero = try #require(throws: ConfigError.self) { try decode([try Google_Protobuf_Any(message: c)]) }
        #expect(zero.path == "resources[0].connect_timeout" && zero.line == nil)
    }

    /// A response large enough to be decoded in parts (one per core): the same resources in the same order, and
    /// errors that name each resource by its place in the whole response, as a decode in one piece would.
    @Test func aLargeResponseDecodesInPartsAsInOnePiece() throws {
        let count = XDSResourceDecoding.parallelThreshold * 2 + 3
        let clusters = try (0..<count).map { try Google_Protobuf_Any(message: edsCluster("c\($0)")) }
        let file = try decode(clusters)
        #expect(file.resources.map(\.name) == (0..<count).map { "c\($0)" })
        #expect(file.documents.count == count)

        var bad = clusters
        for i in [5, count - 2] {
            var c = edsCluster("c\(i)")
            c.connectTimeout = Google_Protobuf_Duration(seconds: 0)
            bad[i] = try Google_Protobuf_Any(message: c)
        }
        let error = try #require(throws: ConfigError.self) { try decode(bad) }
        #expect(error.all.map(\.path) == ["resources[5].connect_timeout", "resources[\(count - 2)].connect_timeout"])

        var twice = clusters
        twice[count - 1] = try Google_Protobuf_Any(message: edsCluster("c1"))
        let duplicate = try #require(throws: ConfigError.self) { try decode(twice) }
        #expect(duplicate.path == "resources[\(count - 1)].name" && duplicate.message.contains("duplicate name 'c1'"))

        var other = clusters
        other[count - 1] = try Google_Protobuf_Any(message: Envoy_Config_Route_V3_RouteConfiguration.with { $0.name = "r" })
        let wrong = try #require(throws: ConfigError.self) { try decode(other) }
        #expect(wrong.path == "resources[\(count - 1)]")
    }

    /// The xds fuzz target's seeds (written by scripts/lib/fuzz_seeds.py with Envoy's own messages) decode as the
    /// proxy would take them: so the target explores the decoder, not the protobuf parser's refusals.
    @Test func theFuzzSeedsAreResponsesTheDecoderTakes() throws {
        let seeds = URL(fileURLWithPath: FuzzTargetTests.fuzzDirectory).appendingPathComponent("seeds/xds")
        func read(_ name: String) throws -> [UInt8] {
            Array(try Data(contentsOf: seeds.appendingPathComponent(name)))
        }
        #expect(try XDSResourceDecoding.decodeResponse(read("cds")) == 2)
        #expect(try XDSResourceDecoding.decodeResponse(read("eds")) == 1)
        #expect(try XDSResourceDecoding.decodeResponse(read("rds")) == 1)
        #expect(try XDSResourceDecoding.decodeResponse(read("lds")) == 2)
        #expect(try XDSResourceDecoding.decodeResponse(read("sds")) == 2)
        let unknown = try #require(throws: ConfigError.self) { try XDSResourceDecoding.decodeResponse(read("cds-unknown-field")) }
        #expect(unknown.message.contains("field number 49"))
        #expect(try XDSResourceDecoding.decodeResponse(Array("not protobuf at all".utf8)) == nil)
    }
}
