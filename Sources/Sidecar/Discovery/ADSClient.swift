import Dispatch
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import NIOConcurrencyHelpers
import NIOCore
import SidecarCore
import SwiftProtobuf
import XDSMessages

/// The aggregated discovery stream (`envoy.service.discovery.v3.AggregatedDiscoveryService/
/// StreamAggregatedResources`, state of the world, or `DeltaAggregatedResources` with `api_type: DELTA_GRPC`) to
/// the control plane of `ads_config`. It sends what `ADSState`
/// says, hands each response's resources to `apply` (which installs them or says why not) one at a time, off the
/// event loops, and answers with the ACK or NACK. When the stream ends it keeps the config it has and opens a new
/// one after a jittered exponential back-off (Envoy's: from 500 ms, at most 30 s), sending the versions it has.
final class ADSClient: Sendable {
    /// `resourceVersions`: delta, each resource's own version (nil: state of the world).
    typealias Apply = @Sendable (_ typeURL: String, _ resources: [Google_Protobuf_Any], _ versionInfo: String,
                                 _ resourceVersions: [String]?) -> String?

    /// The gRPC service a stream speaks: the aggregated one (every type), or one type's own (RDS or SDS from an
    /// `api_config_source`). All carry the same DiscoveryRequest and DiscoveryResponse messages.
    enum Service: Sendable {
        case aggregated
        case routes
        case secrets

        var method: MethodDescriptor {
            switch self {
            case .aggregated: MethodDescriptor(fullyQualifiedService: "envoy.service.discovery.v3.AggregatedDiscoveryService",
                                               method: "StreamAggregatedResources")
            case .routes: MethodDescriptor(fullyQualifiedService: "envoy.service.route.v3.RouteDiscoveryService",
                                           method: "StreamRoutes")
            case .secrets: MethodDescriptor(fullyQualifiedService: "envoy.service.secret.v3.SecretDiscoveryService",
                                            method: "StreamSecrets")
            }
        }

        var deltaMethod: MethodDescriptor {
            switch self {
            case .aggregated: MethodDescriptor(fullyQualifiedService: "envoy.service.discovery.v3.AggregatedDiscoveryService",
                                               method: "DeltaAggregatedResources")
            case .routes: MethodDescriptor(fullyQualifiedService: "envoy.service.route.v3.RouteDiscoveryService",
                                           method: "DeltaRoutes")
            case .secrets: MethodDescriptor(fullyQualifiedService: "envoy.service.secret.v3.SecretDiscoveryService",
                                            method: "DeltaSecrets")
            }
        }
    }

    private let service: Service

    private let client: GRPCClient<HTTP2ClientTransport.Posix>
    private let node: Envoy_Config_Core_V3_Node
    private let apply: Apply
    /// The names wanted now for a non-wildcard type (EDS, RDS).
    private let names: @Sendable (String) -> Set<String>
    private let applyQueue = DispatchQueue(label: "pilotfish.ads.apply")
    private let state: NIOLockedValueBox<Shared>
    private let connected = NIOLockedValueBox(false)
    private let initialFetchTimeout: TimeInterval

    private struct Shared {
        var protocolState: ADSState
        var outbound: AsyncStream<ADSState.Request>.Continuation?
        /// Delta, wildcard types (CDS): every resource held, by name, as the last accepted responses left them.
        var held: [String: [String: Google_Protobuf_Any]] = [:]
        var onInitialized: (@Sendable () -> Void)?
        var task: Task<Void, Never>?
        var stopped = false
    }

    /// `types`: the resource types wanted, in Envoy's order, with whether each is a wildcard subscription.
    /// `host`: an IP address, or a name resolved by DNS at each connection (as a STRICT_DNS cluster's is).
    /// `tls`: the ADS cluster's UpstreamTlsContext (nil: plaintext).
    /// `service`: `.aggregated` counts `control_plane.connected_state`; a route or secret stream counts nothing of its own.
    init(host: String, port: Int, tls: TLSContextConfig?, config: ADSConfig, nodeID: String, nodeCluster: String,
         service: Service = .aggregated,
         types: [(typeURL: String, wildcard: Bool)], initialFetchTimeout: TimeInterval, registry: StatsRegistry,
         names: @escaping @Sendable (String) -> Set<String>, apply: @escaping Apply) throws {
        self.service = service
        let transport: HTTP2ClientTransport.Posix
        let security = ADSTransportSecurity.make(tls)
        var transportConfig = HTTP2ClientTransport.Posix.Config.defaults
        // The TLS server name (SNI) is the transport's authority; Envoy sends `sni` when it is set, else none.
        if let sni = tls?.sni { transportConfig.http2.authority = sni }
        if case .v6? = IPAddress(parsing: host) {
            let target: ResolvableTargets.IPv6 = .ipv6(address: host, port: port)
            transport = try HTTP2ClientTransport.Posix(target: target, transportSecurity: security, config: transportConfig)
        } else if IPAddress(parsing: host) != nil {
            let target: ResolvableTargets.IPv4 = .ipv4(address: host, port: port)
            transport = try HTTP2ClientTransport.Posix(target: target, transportSecurity: security, config: transportConfig)
        } else {
            let target: ResolvableTargets.DNS = .dns(host: host, port: port)
            transport = try HTTP2ClientTransport.Posix(target: target, transportSecurity: security, config: transportConfig)
        }
        client = GRPCClient(transport: transport)
        var node = Envoy_Config_Core_V3_Node()
        node.id = nodeID
        node.cluster = nodeCluster
        node.userAgentName = "pilotfish"
        node.userAgentVersion = SidecarVersion.string
        self.node = node
        self.names = names
        self.apply = apply
        self.initialFetchTimeout = initialFetchTimeout
        state = NIOLockedValueBox(Shared(protocolState: ADSState(
            types: types, nodeOnFirstMessageOnly: config.nodeOnFirstMessageOnly, delta: config.delta)))
        let connected = self.connected
        if service == .aggregated {
            registry.registerComputed("control_plane.connected_state", kind: .gauge) { connected.withLockedValue { $0 } ? 1 : 0 }
        }
    }

    /// Whether every wanted type had its first response (or the initial fetch timed out).
    var initialized: Bool { state.withLockedValue { $0.onInitialized == nil } }

    /// Opens the stream. `onInitialized` runs once, when every wanted type had its first response, or once
    /// `initialFetchTimeout` passed without.
    func start(onInitialized: @escaping @Sendable () -> Void) {
        state.withLockedValue { s in
            s.onInitialized = onInitialized
            askForChangedNames(&s)  // no stream yet: this only records them
        }
        checkInitialized()
        if initialFetchTimeout > 0 {
            DispatchQueue.global().asyncAfter(deadline: .now() + initialFetchTimeout) { [weak self] in
                guard let self, let done = self.state.withLockedValue({ s -> (@Sendable () -> Void)? in
                    defer { s.onInitialized = nil }
                    return s.onInitialized
                }) else { return }
                Log.warning("ads: initial fetch timed out; serving with what arrived", [])
                done()
            }
        }
        let client = self.client
        Task { try? await client.runConnections() }
        let task = Task { [weak self] in guard let self else { return }; await self.run() }
        state.withLockedValue { $0.task = task }
    }

    func stop() {
        let task = state.withLockedValue { s -> Task<Void, Never>? in
            s.stopped = true
            s.outbound?.finish()
            return s.task
        }
        task?.cancel()
        client.beginGracefulShutdown()
    }

    /// The names wanted for the non-wildcard types may have changed (a CDS update brought EDS clusters): asks for
    /// the new ones.
    func refreshNames() {
        state.withLockedValue { askForChangedNames(&$0) }
        checkInitialized()
    }

    /// Sends a request for each non-wildcard type whose wanted names are not the ones subscribed.
    private func askForChangedNames(_ s: inout Shared) {
        for url in s.protocolState.order where !(s.protocolState.types[url]!.wildcard) {
            if let r = s.protocolState.namesChanged(typeURL: url, to: names(url)) { s.outbound?.yield(r) }
        }
    }

    private func checkInitialized() {
        let done = state.withLockedValue { s -> (@Sendable () -> Void)? in
            guard s.protocolState.initialFetchDone, let done = s.onInitialized else { return nil }
            s.onInitialized = nil
            return done
        }
        done?()
    }

    private func message(_ r: ADSState.Request) -> Envoy_Service_Discovery_V3_DiscoveryRequest {
        var m = Envoy_Service_Discovery_V3_DiscoveryRequest()
        m.typeURL = r.typeURL
        m.versionInfo = r.versionInfo
        m.resourceNames = r.resourceNames
        m.responseNonce = r.responseNonce
        if r.includeNode { m.node = node }
        if let error = r.errorDetail { m.errorDetail = Self.status(error) }
        return m
    }

    private func deltaMessage(_ r: ADSState.Request) -> Envoy_Service_Discovery_V3_DeltaDiscoveryRequest {
        var m = Envoy_Service_Discovery_V3_DeltaDiscoveryRequest()
        m.typeURL = r.typeURL
        m.resourceNamesSubscribe = r.subscribe
        m.resourceNamesUnsubscribe = r.unsubscribe
        m.initialResourceVersions = r.initialResourceVersions
        m.responseNonce = r.responseNonce
        if r.includeNode { m.node = node }
        if let error = r.errorDetail { m.errorDetail = Self.status(error) }
        return m
    }

    private static func status(_ message: String) -> Google_Rpc_Status {
        var status = Google_Rpc_Status()
        status.code = 3  // INVALID_ARGUMENT, as Envoy sends
        status.message = message
        return status
    }

    /// Streams until stopped, reconnecting with back-off.
    private func run() async {
        var attempt = 0
        let delta = state.withLockedValue { $0.protocolState.delta }
        while !Task.isCancelled, !state.withLockedValue({ $0.stopped }) {
            let received = delta
                ? await stream(service.deltaMethod, deltaMessage, handle: { [self] in await handleDelta($0) })
                : await stream(service.method, message, handle: { [self] in await handle($0) })
            if received { attempt = 0 }
            let wait = ADSState.backoff(attempt: attempt, draw: Double.random(in: 0..<1))
            attempt += 1
            try? await Task.sleep(nanoseconds: UInt64(wait * 1e9))
        }
    }

    /// One stream, until it ends: the requests `ADSState` gives, written as `Request`s; each response handed to
    /// `handle`. Returns whether a response arrived.
    private func stream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ descriptor: MethodDescriptor, _ convert: @escaping @Sendable (ADSState.Request) -> Request,
        handle: @escaping @Sendable (Response) async -> Void
    ) async -> Bool {
        let (stream, continuation) = AsyncStream<ADSState.Request>.makeStream()
        state.withLockedValue { s in
            s.outbound = continuation
            for r in s.protocolState.streamStarted() { continuation.yield(r) }
        }
        let received = NIOLockedValueBox(false)
        do {
            try await client.bidirectionalStreaming(
                request: StreamingClientRequest(producer: { writer in
                    for await request in stream { try await writer.write(convert(request)) }
                }),
                descriptor: descriptor,
                serializer: ProtobufSerializer<Request>(),
                deserializer: ProtobufDeserializer<Response>(),
                options: .defaults
            ) { [self] response in
                for try await message in response.messages {
                    if !received.withLockedValue({ $0 }) {
                        received.withLockedValue { $0 = true }
                        connected.withLockedValue { $0 = true }
                        Log.info("ads: stream established", [("method", descriptor.method)])
                    }
                    await handle(message)
                }
            }
            Log.warning("ads: stream closed by the control plane", [])
        } catch {
            if !state.withLockedValue({ $0.stopped }) {
                Log.warning("ads: stream failed", [("error", "\(error)")])
            }
        }
        connected.withLockedValue { $0 = false }
        state.withLockedValue { s in
            s.protocolState.streamEnded()
            s.outbound = nil
        }
        continuation.finish()
        return received.withLockedValue { $0 }
    }

    /// Applies one response off the cooperative pool (installing blocks), then ACKs or NACKs it.
    private func handle(_ response: Envoy_Service_Discovery_V3_DiscoveryResponse) async {
        let error = await install(response.typeURL, response.resources, response.versionInfo, nil)
        respond(response.typeURL, version: response.versionInfo, nonce: response.nonce, error: error)
    }

    /// A delta response: CDS and LDS (wildcard types) are applied as the whole set the proxy then holds, so
    /// removed clusters and listeners go; EDS and RDS responses carry only what they change, as state-of-the-world
    /// ones already do. A removed assignment or route configuration is kept, with an error logged, as Envoy 1.40
    /// does (its cluster keeps serving the endpoints it had; the ADS suite's delta-eds-rds-removal checks both).
    private func handleDelta(_ response: Envoy_Service_Discovery_V3_DeltaDiscoveryResponse) async {
        let url = response.typeURL
        let removed = response.removedResources
        let wildcard = state.withLockedValue { $0.protocolState.types[url]?.wildcard ?? false }
        var resources: [Google_Protobuf_Any]
        var versions: [String]
        var held: [String: Google_Protobuf_Any] = [:]
        if wildcard {
            var heldVersions: [String: String] = [:]
            (held, heldVersions) = state.withLockedValue { ($0.held[url] ?? [:], $0.protocolState.types[url]?.resourceVersions ?? [:]) }
            for r in response.resources {
                held[r.name] = r.resource
                heldVersions[r.name] = r.version
            }
            for name in removed { held[name] = nil }
            let names = held.keys.sorted()
            resources = names.map { held[$0]! }
            versions = names.map { heldVersions[$0] ?? "" }
        } else {
            resources = response.resources.map(\.resource)
            versions = response.resources.map(\.version)
            if !removed.isEmpty {
                Log.error("ads: the control plane removed resources of a type whose removal is not supported; kept",
                          [("type_url", url), ("names", removed.joined(separator: ","))])
            }
        }
        let error = await install(url, resources, response.systemVersionInfo, versions)
        if error == nil && wildcard { state.withLockedValue { $0.held[url] = held } }
        respond(url, version: response.systemVersionInfo, nonce: response.nonce, error: error,
                updated: response.resources.map { ($0.name, $0.version) }, removed: removed)
    }

    private func install(_ typeURL: String, _ resources: [Google_Protobuf_Any], _ version: String,
                         _ versions: [String]?) async -> String? {
        let apply = self.apply
        let error: String? = await withCheckedContinuation { done in
            applyQueue.async { done.resume(returning: apply(typeURL, resources, version, versions)) }
        }
        if let error {
            Log.warning("ads: update rejected (NACK)", [("type_url", typeURL), ("version_info", version), ("error", error)])
        }
        return error
    }

    private func respond(_ typeURL: String, version: String, nonce: String, error: String?,
                         updated: [(name: String, version: String)] = [], removed: [String] = []) {
        state.withLockedValue { s in
            if let r = s.protocolState.responded(typeURL: typeURL, versionInfo: version, nonce: nonce, error: error,
                                                 updated: updated, removed: removed) {
                s.outbound?.yield(r)
            }
            // A CDS update may have changed the EDS names: ask for them right after the ACK, as Envoy does.
            askForChangedNames(&s)
        }
        checkInitialized()
    }
}
