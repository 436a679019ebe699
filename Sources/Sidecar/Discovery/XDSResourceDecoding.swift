import Foundation
import SidecarCore
import SwiftProtobuf
import XDSMessages

/// Resources from a control plane, protobuf `Any`s, made into the same typed config values a discovery file
/// gives: each is checked for fields Pilotfish's subset lacks (they land in unknown fields; one is refused, naming
/// its number and message, never dropped), then written as Envoy's JSON form and handed to the file decoder, so a
/// field is refused with the same words whichever way it came.
package enum XDSResourceDecoding {
    /// The `Any` payload types, registered once so that nested `typed_config`s encode as JSON.
    private static let registered: Bool = {
        for type in XDSAnyTypes.all { Google_Protobuf_Any.register(messageType: type) }
        return true
    }()

    private static let jsonOptions: JSONEncodingOptions = {
        var o = JSONEncodingOptions()
        o.preserveProtoFieldNames = true
        return o
    }()

    /// A serialized `DiscoveryResponse` as the ADS stream gets it, decoded as its `type_url` says (CDS, EDS, LDS, RDS
    /// or SDS),
    /// as the proxy would before installing it; nil for bytes that are not one, a `ConfigError` naming what is wrong
    /// for one that cannot be taken. What the `xds` fuzz target runs.
    @discardableResult
    package static func decodeResponse(_ bytes: [UInt8]) throws -> Int? {
        guard let response = try? Envoy_Service_Discovery_V3_DiscoveryResponse(serializedBytes: bytes) else { return nil }
        let resources = response.resources
        let version = response.versionInfo
        switch response.typeURL {
        case DiscoveryResources.cluster:
            return try decode(resources, versionInfo: version, typeURL: response.typeURL, what: "CDS",
                              decode: Cluster.decode, name: \.name).resources.count
        case DiscoveryResources.clusterLoadAssignment:
            return try decode(resources, versionInfo: version, typeURL: response.typeURL, what: "EDS",
                              decode: ClusterLoadAssignment.decode, name: \.clusterName).resources.count
        case DiscoveryResources.routeConfiguration:
            return try decode(resources, versionInfo: version, typeURL: response.typeURL, what: "RDS",
                              httpFilters: HTTPFilterRegistry.catalog, decode: RouteConfiguration.decode,
                              name: \.name).resources.count
        case DiscoveryResources.listener:
            return try decode(resources, versionInfo: version, typeURL: response.typeURL, what: "LDS",
                              httpFilters: HTTPFilterRegistry.catalog, decode: Listener.decode,
                              name: \.name).resources.count
        case DiscoveryResources.secret:
            return try decode(resources, versionInfo: version, typeURL: response.typeURL, what: "SDS",
                              decode: SecretResource.decode, name: \.name).resources.count
        default:
            return nil
        }
    }

    /// `resources` as a discovery file of `typeURL` resources, at `versionInfo`.
    /// `resourceVersions`: delta xDS, each resource's own version (in order).
    /// `compactDocuments`: keep each resource for /config_dump as its protobuf bytes (`compactDocument`) rather
    /// than its JSON, for the types a plane sends by the thousand (clusters, assignments), whose documents serve
    /// only the dump.
    static func decode<R: Sendable>(_ resources: [Google_Protobuf_Any], versionInfo: String,
                                    resourceVersions: [String]? = nil, typeURL: String, what: String,
                                    httpFilters: HTTPFilterCatalog = .none, compactDocuments: Bool = false,
                                    decode: @escaping @Sendable (ConfigValue) throws -> R,
                                    name: @escaping @Sendable (R) -> String) throws -> DiscoveryFile<R> {
        _ = registered
        // A large response is decoded in parts, one per core, side by side: resources are independent, and a
        // thousand assignments were most of the time to an ACK. Errors read as if decoded in one piece.
        let parts = resources.count >= parallelThreshold ? min(max(ProcessInfo.processInfo.activeProcessorCount, 1), 4) : 1
        let bounds = (0...parts).map { $0 * resources.count / parts }
        var outcomes = [Part<R>?](repeating: nil, count: parts)
        outcomes.withUnsafeMutableBufferPointer { buffer in
            // Each part writes its own element only.
            let out = UncheckedSendable(buffer)
            let run: @Sendable (Int) -> Void = { p in
                out.value[p] = decodePart(resources[bounds[p]..<bounds[p + 1]], versionInfo: versionInfo,
                                          typeURL: typeURL, what: what, httpFilters: httpFilters, decode: decode,
                                          name: name)
            }
            if parts == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: parts, execute: run) }
        }
        // A resource that is not what it should be stops at once, as it would in one piece: the first of those.
        for case .refused(let error)? in outcomes { throw error }
        let errors = outcomes.compactMap { if case .invalid(let e)? = $0 { return e }; return nil }
        if !errors.isEmpty { throw ConfigError(collecting: errors).withoutLines }
        var file = DiscoveryFile<R>(versionInfo: versionInfo, resources: [], documents: [])
        var items: [String] = []
        var names: [String: Int] = [:]
        for case .decoded(let part, let json)? in outcomes {
            for r in part.resources {
                let i = file.resources.count
                if let first = names.updateValue(i, forKey: name(r)) {
                    throw ConfigError(path: "resources[\(i)].name", line: nil,
                                      message: "duplicate name '\(name(r))' (also resources[\(first)])")
                }
                file.resources.append(r)
            }
            items += json
        }
        // What /config_dump shows: the resources as the control plane sent them, in Envoy's JSON form.
        file.documents = compactDocuments ? resources.map(compactDocument) : items
        file.resourceVersions = resourceVersions
        return file
    }

    /// A value handed to the parts running side by side, each of which touches only its own share of it.
    private struct UncheckedSendable<T>: @unchecked Sendable {
        let value: T
        init(_ value: T) { self.value = value }
    }

    /// Responses with at least this many resources are decoded in parts.
    static let parallelThreshold = 128

    /// How a part of a response decoded: its resources and their JSON; a resource of the wrong type or with a field
    /// the subset lacks (`refused`); or config errors (`invalid`). Errors name each resource by its place in the
    /// whole response.
    private enum Part<R> {
        case decoded(DiscoveryFile<R>, json: [String])
        case refused(ConfigError)
        case invalid(ConfigError)
    }

    private static func decodePart<R: Sendable>(_ resources: ArraySlice<Google_Protobuf_Any>, versionInfo: String, typeURL: String,
                                      what: String, httpFilters: HTTPFilterCatalog, decode: (ConfigValue) throws -> R,
                                      name: (R) -> String) -> Part<R> {
        let offset = resources.startIndex
        var items: [String] = []
        items.reserveCapacity(resources.count)
        for (i, any) in zip(resources.indices, resources) {
            guard any.typeURL == typeURL else {
                return .refused(ConfigError(path: "resources[\(i)]", line: nil,
                                            message: "a \(what) resource must be a \(typeURL), not '\(any.typeURL)'"))
            }
            do {
                try UnknownFieldCheck.check(any: any)
                items.append(try any.jsonString(options: jsonOptions))
            } catch let error as UnknownFieldCheck.Refusal {
                return .refused(ConfigError(path: "resources[\(i)]\(error.path)", line: nil, message: error.message))
            } catch {
                return .refused(ConfigError(path: "resources[\(i)]", line: nil, message: "cannot decode \(typeURL): \(error)"))
            }
        }
        let text = "{\"version_info\": \(jsonQuoted(versionInfo)), \"resources\": [\(items.joined(separator: ",\n"))]}"
        do {
            guard let root = try ConfigDocument.parse(text) else { preconditionFailure("the text is not empty") }
            // Not written back as YAML for /config_dump (a third of the decoding time for 1,000 assignments):
            let file = try DiscoveryFile.decode(root: root, what: what, typeURL: typeURL, httpFilters: httpFilters,
                                                documents: false, decode: decode, name: name)
            return .decoded(file, json: items)
        } catch let error as ConfigError {
            // The JSON is ours, so its lines mean nothing to the control plane: the path names the field, and
            // its resource by its place in the whole response.
            return .invalid(error.withoutLines.shiftingResources(by: offset))
        } catch {
            return .invalid(ConfigError(path: "resources", line: nil, message: "\(error)"))
        }
    }

    /// Marks a compact document: the rest is the resource's `Any`, serialized, in base64.
    private static let compactMark = "\u{1}"

    /// A resource as /config_dump keeps it, compactly: a quarter of its JSON's size.
    static func compactDocument(_ any: Google_Protobuf_Any) -> String {
        compactMark + ((try? any.serializedBytes() as [UInt8]).map { Data($0).base64EncodedString() } ?? "")
    }

    /// The JSON of a document `compactDocument` made; any other document as it is.
    static func expandedDocument(_ document: String) -> String {
        guard document.hasPrefix(compactMark) else { return document }
        _ = registered
        guard let data = Data(base64Encoded: String(document.dropFirst(compactMark.count))),
              let any = try? Google_Protobuf_Any(serializedBytes: data),
              let json = try? any.jsonString(options: jsonOptions) else { return "{}" }
        return json
    }

    private static func jsonQuoted(_ s: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [s], options: [])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}

extension ConfigError {
    /// The same errors with each `resources[i]` at the start of a path made `resources[i + offset]`.
    func shiftingResources(by offset: Int) -> ConfigError {
        guard offset != 0 else { return self }
        func shift(_ path: String) -> String {
            let prefix = "resources["
            guard path.hasPrefix(prefix), let close = path.firstIndex(of: "]"),
                  let i = Int(path[path.index(path.startIndex, offsetBy: prefix.count)..<close]) else { return path }
            return prefix + String(i + offset) + path[close...]
        }
        var all = self.all.map { ConfigError(path: shift($0.path), line: $0.line, message: $0.message) }
        var first = all.removeFirst()
        first.others = all
        return first
    }

    /// The same errors without line numbers.
    var withoutLines: ConfigError {
        var all = self.all.map { ConfigError(path: $0.path, line: nil, message: $0.message) }
        var first = all.removeFirst()
        first.others = all
        return first
    }
}

/// Walks a message, and the payload of every `Any` in it, for unknown fields: a field the control plane set that
/// Pilotfish's protobuf subset lacks, which would otherwise be lost without a word.
struct UnknownFieldCheck: SwiftProtobuf.Visitor {
    struct Refusal: Error {
        var path: String
        var message: String
    }

    /// The field path so far (".load_assignment.endpoints[0]"), for the refusal.
    private var path: String
    private let messageName: String

    private init(path: String, message: any SwiftProtobuf.Message) {
        self.path = path
        messageName = type(of: message).protoMessageName
    }

    static func check(any: Google_Protobuf_Any) throws {
        try check(any: any, path: "")
    }

    private static func check(any: Google_Protobuf_Any, path: String) throws {
        guard let type = Google_Protobuf_Any.messageType(forTypeURL: any.typeURL) else {
            throw Refusal(path: path, message: "unsupported type '\(any.typeURL)': Pilotfish does not run it")
        }
        let message = try type.init(unpackingAny: any)
        try check(message, path: path)
    }

    private static func check(_ message: any SwiftProtobuf.Message, path: String) throws {
        if let any = message as? Google_Protobuf_Any {
            try check(any: any, path: path)
            return
        }
        var visitor = UnknownFieldCheck(path: path, message: message)
        try message.traverse(visitor: &visitor)
    }

    private func name(_ number: Int) -> String {
        XDSAnyTypes.fieldNames[messageName]?[number] ?? "#\(number)"
    }

    mutating func visitUnknown(bytes: Data) throws {
        let numbers = Self.fieldNumbers(bytes)
        let list = numbers.map(String.init).joined(separator: ", ")
        let noun = numbers.count == 1 ? "field number \(list) is" : "field numbers \(list) are"
        throw Refusal(path: path, message: "\(messageName) \(noun) not supported by Pilotfish (not in its subset of the API)")
    }

    /// The field numbers in unknown-field bytes (protobuf wire format).
    static func fieldNumbers(_ bytes: Data) -> [Int] {
        var numbers: [Int] = []
        var i = bytes.startIndex
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < bytes.endIndex, shift < 64 {
                let b = bytes[i]
                i += 1
                v |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < bytes.endIndex, let tag = varint() {
            let number = Int(tag >> 3)
            if !numbers.contains(number) { numbers.append(number) }
            switch tag & 7 {
            case 0: guard varint() != nil else { return numbers }
            case 1: i += 8
            case 2: guard let n = varint() else { return numbers }; i += Int(n)
            case 5: i += 4
            default: return numbers  // groups: not in Envoy's API
            }
        }
        return numbers
    }

    mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws {
        try Self.check(value, path: "\(path).\(name(fieldNumber))")
    }

    mutating func visitRepeatedMessageField<M: SwiftProtobuf.Message>(value: [M], fieldNumber: Int) throws {
        for (i, v) in value.enumerated() { try Self.check(v, path: "\(path).\(name(fieldNumber))[\(i)]") }
    }

    mutating func visitMapField<KeyType, ValueType: MapValueType>(
        fieldType: _ProtobufMap<KeyType, ValueType>.Type, value: _ProtobufMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int) throws {}

    mutating func visitMapField<KeyType, ValueType>(
        fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type, value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int) throws {}

    mutating func visitMapField<KeyType, ValueType>(
        fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type,
        value: _ProtobufMessageMap<KeyType, ValueType>.BaseType, fieldNumber: Int) throws {
        for (k, v) in value {
            try Self.check(v as! any SwiftProtobuf.Message, path: "\(path).\(name(fieldNumber))[\(k)]")
        }
    }

    mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {}
    mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {}
    mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {}
    mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {}
    mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {}
    mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {}
    mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws {}
}
