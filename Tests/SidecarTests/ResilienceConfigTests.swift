import Foundation
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Decoding of the upstream-resilience parts of Envoy v3 config (load balancing, health checks, outlier
/// detection, circuit breakers, upstream HTTP options, retry and hash policies) and how a route's choices
/// reach the router's decision. Rules and defaults are Envoy 1.40's; every rejection names its field path.
@Suite struct ResilienceConfigTests {
    // MARK: Helpers

    static let clusterPath = "static_resources.clusters[0]"

    static func indent(_ text: String, _ spaces: Int) -> String {
        let pad = String(repeating: " ", count: spaces)
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.isEmpty ? "" : pad + $0 }
            .joined(separator: "\n")
    }

    /// A bootstrap with one listener and one cluster, `service`; `cluster` is appended to the cluster and
    /// `hcm` to the connection manager.
    static func bootstrap(cluster: String = "", hcm: String = "") -> String {
        """
        static_resources:
          listeners:
          - name: ingress
            address:
              socket_address: { address: 127.0.0.1, port_value: 10000 }
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: ingress_http
        \(indent(hcm, 10))
                  http_filters:
                  - name: envoy.filters.http.router
                  route_config:
                    virtual_hosts:
                    - name: backend
                      domains: ["*"]
                      routes:
                      - match: { prefix: "/" }
                        route: { cluster: service }
          clusters:
          - name: service
            connect_timeout: 1s
            load_assignment:
              cluster_name: service
              endpoints:
              - lb_endpoints:
                - endpoint:
                    address:
                      socket_address: { address: 127.0.0.1, port_value: 8080 }
        \(indent(cluster, 4))
        """
    }

    static func cluster(_ yaml: String) throws -> Cluster {
        try Bootstrap.load(text: bootstrap(cluster: yaml)).clusters[0]
    }

    /// The error loading a cluster with `yaml`, checked to name `path` (below the cluster) and the line of the
    /// first line containing `lineOf`.
    static func clusterError(
        _ yaml: String, path: String, lineOf needle: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) -> ConfigError? {
        let text = bootstrap(cluster: yaml)
        let error = #expect(throws: ConfigError.self, sourceLocation: sourceLocation) {
            try Bootstrap.load(text: text)
        }
        #expect(error?.path == clusterPath + "." + path, sourceLocation: sourceLocation)
        if let needle {
            #expect(error?.line == line(of: needle, in: text), sourceLocation: sourceLocation)
        }
        return error
    }

    static func line(of needle: String, in text: String) -> Int {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let i = lines.firstIndex(where: { $0.contains(needle) }) else { fatalError("'\(needle)' not found") }
        return i + 1
    }

    /// A route configuration with one virtual host (`vhost` appended to it) and one route to `c` (`action`
    /// appended to its route action, `route` to the route).
    static func routeText(vhost: String = "", route: String = "", action: String = "") -> String {
        """
        virtual_hosts:
        - name: vh
          domains: ["*"]
        \(indent(vhost, 2))
          routes:
          - match: { prefix: "/" }
        \(indent(route, 4))
            route:
              cluster: c
        \(indent(action, 6))
        """
    }

    static func routes(vhost: String = "", route: String = "", action: String = "") throws -> RouteConfiguration {
        try RouteConfiguration.load(text: routeText(vhost: vhost, route: route, action: action))
    }

    static func forwardAction(_ action: String) throws -> ForwardAction {
        let config = try routes(action: action)
        guard case .forward(let f) = config.virtualHosts[0].routes[0].action else { fatalError("not a forward") }
        return f
    }

    static func routeError(
        vhost: String = "", route: String = "", action: String = "", path: String, lineOf needle: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> ConfigError? {
        let text = routeText(vhost: vhost, route: route, action: action)
        let error = #expect(throws: ConfigError.self, sourceLocation: sourceLocation) {
            try RouteConfiguration.load(text: text)
        }
        #expect(error?.path == path, sourceLocation: sourceLocation)
        if let needle {
            #expect(error?.line == line(of: needle, in: text), sourceLocation: sourceLocation)
        }
        return error
    }

    static func target(_ config: RouteConfiguration) -> ForwardTarget? {
        if case .forward(let t) = config.route(RouteRequest(method: "GET", path: "/", authority: "a")) { return t }
        return nil
    }

    static func describe(_ policy: HashPolicy) -> String {
        let source: String
        switch policy.source {
        case .header(let h): source = "header:\(h)"
        case .cookie(let c): source = "cookie:\(c)"
        case .sourceIP: source = "source_ip"
        case .queryParameter(let q): source = "query:\(q)"
        }
        return policy.terminal ? source + "!" : source
    }

    static let unsupported = "is a valid Envoy field but is not supported by Pilotfish yet"

    // MARK: Defaults

    @Test func aClusterWithoutResilienceFieldsGetsEnvoysDefaults() throws {
        let c = try Self.cluster("")
        #expect(c.lbPolicy == .ROUND_ROBIN)
        #expect(c.loadBalancing.healthyPanicThreshold == 50)
        #expect(c.loadBalancing.choiceCount == 2)
        #expect(c.loadBalancing.activeRequestBias == 1.0)
        #expect(c.loadBalancing.minimumRingSize == 1024)
        #expect(c.loadBalancing.maximumRingSize == 8 * 1024 * 1024)
        #expect(c.loadBalancing.maglevTableSize == 65537)
        #expect(c.healthChecks.isEmpty)
        #expect(c.outlierDetection == nil)
        #expect(c.circuitBreakers.map(\.priority) == [.DEFAULT, .HIGH])
        for t in c.circuitBreakers {
            #expect(t.maxConnections == 1024 && t.maxPendingRequests == 1024 && t.maxRequests == 1024)
            #expect(t.maxRetries == 3 && t.retryBudget == nil && !t.trackRemaining)
        }
        #expect(c.httpProtocolOptions.idleTimeout == .seconds(3600))
        #expect(c.httpProtocolOptions.maxConnectionDuration == nil)
        #expect(c.httpProtocolOptions.maxRequestsPerConnection == nil)
    }

    // MARK: Load balancing

    @Test func everyLBPolicyButPolicyConfigDecodes() throws {
        for policy in ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"] {
            #expect(try Self.cluster("lb_policy: \(policy)").lbPolicy.rawValue == policy)
        }
        let e = Self.clusterError("lb_policy: LOAD_BALANCING_POLICY_CONFIG", path: "lb_policy")
        #expect(e?.message.contains("not supported by Pilotfish yet") == true)
    }

    @Test func leastRequestAndCommonLBConfigWithEveryField() throws {
        let c = try Self.cluster(
            """
            lb_policy: LEAST_REQUEST
            least_request_lb_config:
              choice_count: 5
              active_request_bias: { default_value: 0.5, runtime_key: upstream.bias }
            common_lb_config:
              healthy_panic_threshold: { value: 25.9 }
            """)
        #expect(c.loadBalancing.policy == .LEAST_REQUEST)
        #expect(c.loadBalancing.choiceCount == 5)
        #expect(c.loadBalancing.activeRequestBias == 0.5)
        // Envoy truncates the panic threshold to a whole percent.
        #expect(c.loadBalancing.healthyPanicThreshold == 25)
    }

    @Test func ringHashAndMaglevConfigs() throws {
        let ring = try Self.cluster(
            """
            lb_policy: RING_HASH
            ring_hash_lb_config: { minimum_ring_size: 64, maximum_ring_size: 4096, hash_function: XX_HASH }
            """)
        #expect(ring.loadBalancing.minimumRingSize == 64)
        #expect(ring.loadBalancing.maximumRingSize == 4096)
        let maglev = try Self.cluster("lb_policy: MAGLEV\nmaglev_lb_config: { table_size: 5000011 }")
        #expect(maglev.loadBalancing.maglevTableSize == 5_000_011)
        let rr = try Self.cluster("lb_policy: ROUND_ROBIN\nround_robin_lb_config: {}")
        #expect(rr.lbPolicy == .ROUND_ROBIN)
    }

    @Test func anLBConfigForAnotherPolicyIsRejected() {
        let e = Self.clusterError(
            "lb_policy: ROUND_ROBIN\nring_hash_lb_config: { minimum_ring_size: 64 }", path: "ring_hash_lb_config",
            lineOf: "ring_hash_lb_config")
        #expect(e?.message.contains("applies only to lb_policy RING_HASH") == true)
        // The default policy is ROUND_ROBIN.
        let d = Self.clusterError("least_request_lb_config: { choice_count: 3 }", path: "least_request_lb_config")
        #expect(d?.message.contains("ROUND_ROBIN") == true)
        _ = Self.clusterError("lb_policy: RING_HASH\nmaglev_lb_config: {}", path: "maglev_lb_config")
    }

    @Test func lbConfigValuesOutsideEnvoysRulesAreRejected() {
        let choice = Self.clusterError(
            "lb_policy: LEAST_REQUEST\nleast_request_lb_config: { choice_count: 1 }",
            path: "least_request_lb_config.choice_count")
        #expect(choice?.message.contains("out of range") == true)
        _ = Self.clusterError(
            "lb_policy: LEAST_REQUEST\nleast_request_lb_config: { active_request_bias: { default_value: -1 } }",
            path: "least_request_lb_config.active_request_bias.default_value")
        let ring = Self.clusterError(
            "lb_policy: RING_HASH\nring_hash_lb_config: { minimum_ring_size: 100, maximum_ring_size: 10 }",
            path: "ring_hash_lb_config")
        #expect(ring?.message.contains("minimum_ring_size (100) > maximum_ring_size (10)") == true)
        _ = Self.clusterError(
            "lb_policy: RING_HASH\nring_hash_lb_config: { maximum_ring_size: 8388609 }",
            path: "ring_hash_lb_config.maximum_ring_size")
        let murmur = Self.clusterError(
            "lb_policy: RING_HASH\nring_hash_lb_config: { hash_function: MURMUR_HASH_2 }",
            path: "ring_hash_lb_config.hash_function")
        #expect(murmur?.message.contains("not supported by Pilotfish yet") == true)
        for size in [0, 1, 8, 65536] {
            let e = Self.clusterError(
                "lb_policy: MAGLEV\nmaglev_lb_config: { table_size: \(size) }", path: "maglev_lb_config.table_size")
            #expect(e?.message.contains("prime") == true)
        }
        _ = Self.clusterError(
            "common_lb_config: { healthy_panic_threshold: { value: 100.5 } }",
            path: "common_lb_config.healthy_panic_threshold.value")
    }

    @Test func unsupportedLBFieldsAreNamed() {
        let slow = Self.clusterError(
            "round_robin_lb_config:\n  slow_start_config: { slow_start_window: 1s }",
            path: "round_robin_lb_config.slow_start_config", lineOf: "slow_start_config")
        #expect(slow?.message.contains("'slow_start_config' " + Self.unsupported) == true)
        _ = Self.clusterError(
            "common_lb_config: { zone_aware_lb_config: {} }", path: "common_lb_config.zone_aware_lb_config")
        _ = Self.clusterError(
            "lb_policy: LEAST_REQUEST\nleast_request_lb_config: { slow_start_config: {} }",
            path: "least_request_lb_config.slow_start_config")
    }

    // MARK: Health checks

    @Test func httpHealthCheckWithEveryField() throws {
        let c = try Self.cluster(
            """
            health_checks:
            - timeout: 0.5s
              interval: 2s
              interval_jitter: 0.1s
              initial_jitter: 0.2s
              unhealthy_threshold: 3
              healthy_threshold: 2
              no_traffic_interval: 30s
              unhealthy_interval: 5s
              reuse_connection: false
              http_health_check:
                host: health.local
                path: /healthz
                expected_statuses: [{ start: 200, end: 300 }, { start: 404, end: 405 }]
                method: HEAD
                codec_client_type: HTTP1
            """)
        #expect(c.healthChecks.count == 1)
        let hc = c.healthChecks[0]
        #expect(hc.timeout == .milliseconds(500) && hc.interval == .seconds(2))
        #expect(hc.intervalJitter == .milliseconds(100) && hc.initialJitter == .milliseconds(200))
        #expect(hc.unhealthyThreshold == 3 && hc.healthyThreshold == 2)
        #expect(hc.noTrafficInterval == .seconds(30) && hc.unhealthyInterval == .seconds(5))
        #expect(!hc.reuseConnection)
        guard case .http(let http) = hc.kind else {
            Issue.record("expected an HTTP check")
            return
        }
        #expect(http.host == "health.local")
        #expect(http.path == "/healthz")
        #expect(http.expectedStatuses == [200..<300, 404..<405])
        #expect(http.method == "HEAD")
    }

    @Test func httpHealthCheckDefaults() throws {
        let c = try Self.cluster(
            """
            health_checks:
            - timeout: 1s
              interval: 5s
              unhealthy_threshold: 2
              healthy_threshold: 1
              http_health_check: { path: /h }
            """)
        let hc = c.healthChecks[0]
        #expect(hc.intervalJitter.isZero && hc.initialJitter.isZero)
        #expect(hc.noTrafficInterval == .seconds(60))
        #expect(hc.unhealthyInterval == nil)
        #expect(hc.reuseConnection)
        guard case .http(let http) = hc.kind else {
            Issue.record("expected an HTTP check")
            return
        }
        #expect(http.host == nil)
        #expect(http.expectedStatuses == [200..<201])
        #expect(http.method == "GET")
    }

    @Test func tcpHealthCheckPayloadsAreHexOrBase64() throws {
        let c = try Self.cluster(
            """
            health_checks:
            - timeout: 1s
              interval: 5s
              unhealthy_threshold: 2
              healthy_threshold: 1
              tcp_health_check:
                send: { text: 50494e47 }
                receive: [{ text: 504F4E47 }, { binary: T0s= }, { binary: T0s }]
            """)
        guard case .tcp(let tcp) = c.healthChecks[0].kind else {
            Issue.record("expected a TCP check")
            return
        }
        #expect(tcp.send == Array("PING".utf8))
        #expect(tcp.receive == [Array("PONG".utf8), Array("OK".utf8), Array("OK".utf8)])
        let connectOnly = try Self.cluster(
            Self.check("tcp_health_check: {}")
        )
        guard case .tcp(let empty) = connectOnly.healthChecks[0].kind else {
            Issue.record("expected a TCP check")
            return
        }
        #expect(empty.send.isEmpty && empty.receive.isEmpty)
    }

    static func check(_ body: String, extra: String = "") -> String {
        """
        health_checks:
        - timeout: 1s
          interval: 1s
          unhealthy_threshold: 1
          healthy_threshold: 1
        \(indent(extra, 2))
        \(indent(body, 2))
        """
    }

    @Test func expectedStatusesFollowEnvoysRangeRules() {
        let end = Self.clusterError(
            Self.check("http_health_check: { path: /h, expected_statuses: [{ start: 200, end: 601 }] }"),
            path: "health_checks[0].http_health_check.expected_statuses[0]")
        #expect(end?.message.contains("expecting end <= 600, but found end=601") == true)
        let start = Self.clusterError(
            Self.check("http_health_check: { path: /h, expected_statuses: [{ start: 99, end: 200 }] }"),
            path: "health_checks[0].http_health_check.expected_statuses[0]")
        #expect(start?.message.contains("expecting start >= 100") == true)
        let empty = Self.clusterError(
            Self.check(
                """
                http_health_check:
                  path: /h
                  expected_statuses: [{ start: 200, end: 201 }, { start: 300, end: 300 }]
                """),
            path: "health_checks[0].http_health_check.expected_statuses[1]")
        #expect(empty?.message.contains("expecting start < end") == true)
    }

    @Test func healthCheckRequiredFieldsAndValues() {
        let missing = Self.clusterError(
            "health_checks:\n- { timeout: 1s, interval: 1s, unhealthy_threshold: 1, tcp_health_check: {} }",
            path: "health_checks[0]", lineOf: "- { timeout")
        #expect(missing?.message.contains("missing required field 'healthy_threshold'") == true)
        _ = Self.clusterError(
            "health_checks:\n- { timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1, tcp_health_check: {} }",
            path: "health_checks[0]")
        let zero = Self.clusterError(
            Self.check("tcp_health_check: {}", extra: "no_traffic_interval: 0s"),
            path: "health_checks[0].no_traffic_interval")
        #expect(zero?.message.contains("greater than 0s") == true)
        let checker = Self.clusterError(Self.check(""), path: "health_checks[0]")
        #expect(checker?.message.contains("one of http_health_check, tcp_health_check is required") == true)
        _ = Self.clusterError(Self.check("http_health_check: { host: h }"), path: "health_checks[0].http_health_check")
        let hex = Self.clusterError(
            Self.check("tcp_health_check: { send: { text: abc } }"), path: "health_checks[0].tcp_health_check.send.text"
        )
        #expect(hex?.message.contains("invalid hex string 'abc'") == true)
        _ = Self.clusterError(
            Self.check("tcp_health_check: { receive: [{}] }"), path: "health_checks[0].tcp_health_check.receive[0]")
        _ = Self.clusterError(
            Self.check("http_health_check: { path: /h, method: CONNECT }"),
            path: "health_checks[0].http_health_check.method")
    }

    @Test func unsupportedHealthCheckFeaturesAreNamed() {
        let grpc = Self.clusterError(
            Self.check("grpc_health_check: {}"), path: "health_checks[0].grpc_health_check", lineOf: "grpc_health_check"
        )
        #expect(grpc?.message.contains(Self.unsupported) == true)
        _ = Self.clusterError(Self.check("tcp_health_check: {}", extra: "name: a"), path: "health_checks[0].name")
        _ = Self.clusterError(
            Self.check("http_health_check: { path: /h, request_headers_to_add: [] }"),
            path: "health_checks[0].http_health_check.request_headers_to_add")
        _ = Self.clusterError(
            Self.check("http_health_check: { path: /h, codec_client_type: HTTP2 }"),
            path: "health_checks[0].http_health_check.codec_client_type")
        let two = Self.clusterError(
            """
            health_checks:
            - { timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} }
            - { timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} }
            """, path: "health_checks[1]")
        #expect(two?.message.contains("more than one health check") == true)
    }

    // MARK: Outlier detection

    @Test func outlierDetectionDefaults() throws {
        let od = try #require(try Self.cluster("outlier_detection: {}").outlierDetection)
        #expect(od.consecutive5xx == 5 && od.consecutiveGatewayFailure == 5 && od.consecutiveLocalOriginFailure == 5)
        #expect(od.interval == .seconds(10) && od.baseEjectionTime == .seconds(30))
        #expect(od.maxEjectionTime == .seconds(300) && od.maxEjectionTimeJitter.isZero)
        #expect(od.maxEjectionPercent == 10)
        #expect(od.enforcingConsecutive5xx == 100 && od.enforcingConsecutiveGatewayFailure == 0)
        #expect(od.enforcingSuccessRate == 100 && od.successRateStdevFactor == 1900)
        #expect(od.successRateMinimumHosts == 5 && od.successRateRequestVolume == 100)
        #expect(od.failurePercentageThreshold == 85 && od.enforcingFailurePercentage == 0)
        #expect(!od.splitExternalLocalOriginErrors && od.successfulActiveHealthCheckUnejectHost)
        #expect(!od.alwaysEjectOneHost)
    }

    @Test func outlierDetectionWithEveryField() throws {
        let od = try #require(
            try Self.cluster(
                """
                outlier_detection:
                  consecutive_5xx: 3
                  interval: 2s
                  base_ejection_time: 7s
                  max_ejection_percent: 50
                  enforcing_consecutive_5xx: 90
                  enforcing_success_rate: 80
                  success_rate_minimum_hosts: 4
                  success_rate_request_volume: 20
                  success_rate_stdev_factor: 1000
                  consecutive_gateway_failure: 6
                  enforcing_consecutive_gateway_failure: 70
                  split_external_local_origin_errors: true
                  consecutive_local_origin_failure: 8
                  enforcing_consecutive_local_origin_failure: 60
                  enforcing_local_origin_success_rate: 50
                  failure_percentage_threshold: 40
                  enforcing_failure_percentage: 30
                  enforcing_failure_percentage_local_origin: 20
                  failure_percentage_minimum_hosts: 3
                  failure_percentage_request_volume: 9
                  max_ejection_time: 60s
                  max_ejection_time_jitter: 0.5s
                  successful_active_health_check_uneject_host: false
                  always_eject_one_host: true
                """
            ).outlierDetection)
        #expect(od.consecutive5xx == 3 && od.interval == .seconds(2) && od.baseEjectionTime == .seconds(7))
        #expect(od.maxEjectionPercent == 50 && od.enforcingConsecutive5xx == 90 && od.enforcingSuccessRate == 80)
        #expect(od.successRateMinimumHosts == 4 && od.successRateRequestVolume == 20)
        #expect(od.successRateStdevFactor == 1000)
        #expect(od.consecutiveGatewayFailure == 6 && od.enforcingConsecutiveGatewayFailure == 70)
        #expect(od.splitExternalLocalOriginErrors && od.consecutiveLocalOriginFailure == 8)
        #expect(od.enforcingConsecutiveLocalOriginFailure == 60 && od.enforcingLocalOriginSuccessRate == 50)
        #expect(od.failurePercentageThreshold == 40 && od.enforcingFailurePercentage == 30)
        #expect(od.enforcingFailurePercentageLocalOrigin == 20)
        #expect(od.failurePercentageMinimumHosts == 3 && od.failurePercentageRequestVolume == 9)
        #expect(od.maxEjectionTime == .seconds(60) && od.maxEjectionTimeJitter == .milliseconds(500))
        #expect(!od.successfulActiveHealthCheckUnejectHost && od.alwaysEjectOneHost)
    }

    @Test func maxEjectionTimeIsNeverBelowTheBaseTime() throws {
        // Unset, the cap is 300s or the base time, whichever is larger (Envoy's DetectorConfig).
        let long = try #require(try Self.cluster("outlier_detection: { base_ejection_time: 400s }").outlierDetection)
        #expect(long.maxEjectionTime == .seconds(400))
        let e = Self.clusterError(
            "outlier_detection: { base_ejection_time: 10s, max_ejection_time: 5s }",
            path: "outlier_detection.max_ejection_time")
        #expect(e?.message.contains("cannot be smaller than base_ejection_time") == true)
    }

    @Test func outlierDetectionValuesOutsideEnvoysRulesAreRejected() {
        let percent = Self.clusterError(
            "outlier_detection:\n  enforcing_consecutive_5xx: 101", path: "outlier_detection.enforcing_consecutive_5xx",
            lineOf: "enforcing_consecutive_5xx")
        #expect(percent?.message.contains("out of range") == true)
        _ = Self.clusterError(
            "outlier_detection: { max_ejection_percent: 120 }", path: "outlier_detection.max_ejection_percent")
        _ = Self.clusterError("outlier_detection: { interval: 0s }", path: "outlier_detection.interval")
        _ = Self.clusterError("outlier_detection: { consecutive_5xx: -1 }", path: "outlier_detection.consecutive_5xx")
        let monitors = Self.clusterError("outlier_detection: { monitors: [] }", path: "outlier_detection.monitors")
        #expect(monitors?.message.contains(Self.unsupported) == true)
        _ = Self.clusterError("outlier_detection: { colour: red }", path: "outlier_detection.colour")
    }

    // MARK: Circuit breakers

    @Test func circuitBreakersHaveBothPrioritiesWithDefaultsFilled() throws {
        let c = try Self.cluster("circuit_breakers: { thresholds: [{ priority: HIGH, max_requests: 10 }] }")
        #expect(c.circuitBreakers.map(\.priority) == [.DEFAULT, .HIGH])
        #expect(c.circuitBreakers[0].maxRequests == 1024)
        #expect(c.circuitBreakers[1].maxRequests == 10)
        #expect(c.circuitBreakers[1].maxConnections == 1024 && c.circuitBreakers[1].maxRetries == 3)
    }

    @Test func circuitBreakerThresholdsWithEveryField() throws {
        let c = try Self.cluster(
            """
            circuit_breakers:
              thresholds:
              - priority: DEFAULT
                max_connections: 1
                max_pending_requests: 2
                max_requests: 3
                max_retries: 4
                retry_budget: { budget_percent: { value: 30 }, min_retry_concurrency: 5 }
                track_remaining: true
              - priority: HIGH
                retry_budget: {}
            """)
        let d = c.circuitBreakers[0]
        #expect(d.maxConnections == 1 && d.maxPendingRequests == 2 && d.maxRequests == 3 && d.maxRetries == 4)
        #expect(d.retryBudget?.budgetPercent == 30 && d.retryBudget?.minRetryConcurrency == 5)
        #expect(d.trackRemaining)
        // An empty retry_budget is a budget with Envoy's defaults: 20 %, at least 3.
        #expect(c.circuitBreakers[1].retryBudget?.budgetPercent == 20)
        #expect(c.circuitBreakers[1].retryBudget?.minRetryConcurrency == 3)
        #expect(!c.circuitBreakers[1].trackRemaining)
    }

    @Test func aDuplicatePriorityIsRejected() {
        let e = Self.clusterError(
            """
            circuit_breakers:
              thresholds:
              - { priority: HIGH, max_connections: 1 }
              - { priority: HIGH, max_connections: 2 }
            """, path: "circuit_breakers.thresholds[1].priority", lineOf: "max_connections: 2")
        #expect(e?.message.contains("duplicate thresholds for priority HIGH") == true)
        // An entry without a priority is DEFAULT.
        _ = Self.clusterError(
            "circuit_breakers: { thresholds: [{ max_requests: 1 }, { priority: DEFAULT }] }",
            path: "circuit_breakers.thresholds[1].priority")
    }

    @Test func unsupportedCircuitBreakerFieldsAreNamed() {
        _ = Self.clusterError(
            "circuit_breakers: { per_host_thresholds: [{ max_connections: 1 }] }",
            path: "circuit_breakers.per_host_thresholds")
        _ = Self.clusterError(
            "circuit_breakers: { thresholds: [{ max_connection_pools: 1 }] }",
            path: "circuit_breakers.thresholds[0].max_connection_pools")
        _ = Self.clusterError(
            "circuit_breakers: { thresholds: [{ retry_budget: { budget_interval: 1s } }] }",
            path: "circuit_breakers.thresholds[0].retry_budget.budget_interval")
        _ = Self.clusterError(
            "circuit_breakers: { thresholds: [{ retry_budget: { budget_percent: { value: 101 } } }] }",
            path: "circuit_breakers.thresholds[0].retry_budget.budget_percent.value")
        let priority = Self.clusterError(
            "circuit_breakers: { thresholds: [{ priority: LOW }] }", path: "circuit_breakers.thresholds[0].priority")
        #expect(priority?.message.contains("expected one of: DEFAULT, HIGH") == true)
    }

    // MARK: Upstream HTTP protocol options

    static let typedOptions = """
        typed_extension_protocol_options:
          envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
            "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
            explicit_http_config: { http_protocol_options: {} }
        """

    static let tlsTransportSocket = """
        transport_socket:
          name: envoy.transport_sockets.tls
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        """

    /// auto_config over TLS: HTTP/2 or HTTP/1.1 by ALPN, with `h2,http/1.1` offered when the context names no ALPN.
    @Test func autoConfigOverTLS() throws {
        let auto = Self.typedOptions.replacingOccurrences(
            of: "explicit_http_config: { http_protocol_options: {} }",
            with: "auto_config: { http2_protocol_options: { max_concurrent_streams: 7 }, http_protocol_options: {} }")
        let c = try Self.cluster(auto + "\n" + Self.tlsTransportSocket)
        #expect(c.httpProtocolOptions.upstreamProtocol == .auto)
        #expect(c.httpProtocolOptions.http2Options?.maxConcurrentStreams == 7)
        #expect(c.httpProtocolOptions.defaultALPN == ["h2", "http/1.1"])
        #expect(c.httpProtocolOptions.needsHTTP1OnlyALPN)
        let bare = try Self.cluster(Self.typedOptions.replacingOccurrences(
            of: "explicit_http_config: { http_protocol_options: {} }", with: "auto_config: {}") + "\n"
            + Self.tlsTransportSocket)
        #expect(bare.httpProtocolOptions.http2Options?.maxConcurrentStreams == 2_147_483_647)
        // HTTP/3 and the alternate-protocols cache are named, not ignored.
        let options = "typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.auto_config"
        for field in ["http3_protocol_options: {}", "alternate_protocols_cache_options: { name: c }"] {
            let error = Self.clusterError(
                Self.typedOptions.replacingOccurrences(
                    of: "explicit_http_config: { http_protocol_options: {} }", with: "auto_config: { \(field) }")
                    + "\n" + Self.tlsTransportSocket,
                path: options + "." + field.prefix(while: { $0 != ":" }))
            #expect(error?.message.contains("not supported by Pilotfish yet") == true)
        }
        // use_downstream_protocol_config over TLS now loads: each connection offers its request's protocol.
        let downstream = try Self.cluster(Self.typedOptions.replacingOccurrences(
            of: "explicit_http_config: { http_protocol_options: {} }", with: "use_downstream_protocol_config: {}") + "\n"
            + Self.tlsTransportSocket)
        #expect(downstream.httpProtocolOptions.upstreamProtocol == .downstream)
        #expect(downstream.tls != nil)
    }

    @Test func typedHttpProtocolOptionsWithEveryField() throws {
        let c = try Self.cluster(
            Self.typedOptions + "\n"
                + "    common_http_protocol_options: { idle_timeout: 30s, max_connection_duration: 60s, "
                + "max_requests_per_connection: 100 }")
        #expect(c.httpProtocolOptions.idleTimeout == .seconds(30))
        #expect(c.httpProtocolOptions.maxConnectionDuration == .seconds(60))
        #expect(c.httpProtocolOptions.maxRequestsPerConnection == 100)
        // Without common options, Envoy's defaults.
        let plain = try Self.cluster(Self.typedOptions)
        #expect(plain.httpProtocolOptions.idleTimeout == .seconds(3600))
    }

    @Test func deprecatedClusterLevelHttpOptions() throws {
        let c = try Self.cluster(
            """
            common_http_protocol_options: { idle_timeout: 0s, max_connection_duration: 0s }
            max_requests_per_connection: 1
            """)
        // A zero idle timeout disables it; a zero duration is no limit.
        #expect(c.httpProtocolOptions.idleTimeout.isZero)
        #expect(c.httpProtocolOptions.maxConnectionDuration == nil)
        #expect(c.httpProtocolOptions.maxRequestsPerConnection == 1)
        // The cluster-level limit also applies next to typed options without one.
        let mixed = try Self.cluster(Self.typedOptions + "\nmax_requests_per_connection: 7")
        #expect(mixed.httpProtocolOptions.maxRequestsPerConnection == 7)
    }

    @Test func httpOptionsThatEnvoyWouldIgnoreOrRejectAreErrors() throws {
        let both = Self.clusterError(
            Self.typedOptions + "\ncommon_http_protocol_options: { idle_timeout: 3s }",
            path: "common_http_protocol_options")
        #expect(both?.message.contains("Envoy would ignore it") == true)
        let twice = Self.clusterError(
            "common_http_protocol_options: { max_requests_per_connection: 4 }\nmax_requests_per_connection: 3",
            path: "max_requests_per_connection")
        #expect(twice?.message.contains("only one of max_requests_per_connection") == true)
        let options = "typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        let noProtocol = Self.clusterError(
            """
            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
            """, path: options)
        #expect(noProtocol?.message.contains("one of explicit_http_config") == true)
        // auto_config picks the protocol by ALPN: without TLS, Envoy's own complaint.
        let plainAuto = Self.clusterError(
            Self.typedOptions.replacingOccurrences(
                of: "explicit_http_config: { http_protocol_options: {} }", with: "auto_config: {}"),
            path: "typed_extension_protocol_options")
        #expect(plainAuto?.message.contains("ALPN configured for cluster") == true)
        #expect(plainAuto?.message.contains("non-ALPN transport socket") == true)
        // HTTP/2 options Pilotfish implements load; the ones it does not are refused by name.
        let h2 = Self.bootstrap(cluster: Self.typedOptions.replacingOccurrences(
            of: "http_protocol_options: {}", with: "http2_protocol_options: { max_concurrent_streams: 10 }"))
        let loaded = try #require(try? Bootstrap.load(text: h2))
        #expect(loaded.clusters[0].httpProtocolOptions.http2Options?.maxConcurrentStreams == 10)
        let h2Refused = Self.bootstrap(cluster: Self.typedOptions.replacingOccurrences(
            of: "http_protocol_options: {}", with: "http2_protocol_options: { allow_metadata: true }"))
        let h2Errors = (#expect(throws: ConfigError.self) { try Bootstrap.load(text: h2Refused) })?.all.map(\.path) ?? []
        #expect(h2Errors.contains(
            Self.clusterPath + "." + options + ".explicit_http_config.http2_protocol_options.allow_metadata"),
            "\(h2Errors)")
        _ = Self.clusterError(
            Self.typedOptions.replacingOccurrences(
                of: "http_protocol_options: {}", with: "http_protocol_options: { enable_trailers: true }"),
            path: options + ".explicit_http_config.http_protocol_options.enable_trailers")
        _ = Self.clusterError(
            Self.typedOptions + "\n    common_http_protocol_options: { max_stream_duration: 1s }",
            path: options + ".common_http_protocol_options.max_stream_duration")
        _ = Self.clusterError(
            Self.typedOptions + "\n    retry_policy: {}", path: options + ".retry_policy")
        let other = Self.clusterError(
            "typed_extension_protocol_options: { envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions: {} }",
            path: "typed_extension_protocol_options.envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions")
        #expect(other?.message.contains("not supported by Pilotfish yet") == true)
        _ = Self.clusterError(
            Self.typedOptions.replacingOccurrences(
                of: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                with: "type.googleapis.com/x.Y"),
            path: options + ".@type")
    }

    // MARK: Retry policy

    @Test func retryPolicyWithEveryField() throws {
        let f = try Self.forwardAction(
            """
            retry_policy:
              retry_on: "5xx,gateway-error, reset,connect-failure,retriable-4xx,refused-stream,\\
                retriable-status-codes,retriable-headers,unavailable"
              num_retries: 3
              per_try_timeout: 0.5s
              per_try_idle_timeout: 0.2s
              retry_back_off: { base_interval: 0.1s, max_interval: 1s }
              retry_host_predicate: [{ name: envoy.retry_host_predicates.previous_hosts }]
              host_selection_retry_max_attempts: 5
              retriable_status_codes: [503, 409]
              retriable_headers: [{ name: X-Retry, present_match: true }]
              retriable_request_headers: [{ name: ":method", string_match: { exact: GET } }]
            """)
        let p = try #require(f.retryPolicy)
        #expect(
            p.retryOn == [
                .fiveXX, .gatewayError, .reset, .connectFailure, .retriable4xx, .refusedStream, .retriableStatusCodes,
                .retriableHeaders, .grpcUnavailable,
            ])
        #expect(p.numRetries == 3)
        #expect(p.perTryTimeout == .milliseconds(500) && p.perTryIdleTimeout == .milliseconds(200))
        #expect(p.backOffBase == .milliseconds(100) && p.effectiveBackOffMax == .seconds(1))
        #expect(p.avoidPreviousHosts)
        #expect(p.hostSelectionRetryMaxAttempts == 5)
        #expect(p.retriableStatusCodes == [503, 409])
        #expect(p.retriableHeaders.map(\.name) == ["x-retry"])
        #expect(p.retriableRequestHeaders.map(\.name) == [":method"])
    }

    @Test func retryPolicyDefaults() throws {
        let p = try #require(try Self.forwardAction("retry_policy: { retry_on: 5xx }").retryPolicy)
        #expect(p.retryOn == .fiveXX)
        #expect(p.numRetries == 1)
        #expect(p.perTryTimeout == nil && p.perTryIdleTimeout == nil)
        #expect(p.backOffBase == .milliseconds(25) && p.effectiveBackOffMax == .milliseconds(250))
        #expect(!p.avoidPreviousHosts && p.hostSelectionRetryMaxAttempts == 1)
        #expect(p.retriableStatusCodes.isEmpty && p.retriableHeaders.isEmpty && p.retriableRequestHeaders.isEmpty)
        // A zero per-try timeout means none, as in Envoy.
        let zero = try #require(try Self.forwardAction("retry_policy: { per_try_timeout: 0s }").retryPolicy)
        #expect(zero.perTryTimeout == nil && zero.retryOn.isEmpty)
        #expect(try Self.forwardAction("timeout: 1s").retryPolicy == nil)
    }

    @Test func previousHostsPredicateWithTypedConfig() throws {
        let p = try #require(
            try Self.forwardAction(
                """
                retry_policy:
                  retry_host_predicate:
                  - name: envoy.retry_host_predicates.previous_hosts
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                """
            ).retryPolicy)
        #expect(p.avoidPreviousHosts)
    }

    static let retryPath = "virtual_hosts[0].routes[0].route.retry_policy"

    @Test func anUnknownRetryConditionIsRejected() {
        let e = Self.routeError(
            action: "retry_policy:\n  retry_on: 5xx,bogus", path: Self.retryPath + ".retry_on", lineOf: "bogus")
        #expect(e?.message.contains("unknown retry_on condition 'bogus'") == true)
    }

    @Test func retryPolicyValuesOutsideEnvoysRulesAreRejected() {
        let backOff = Self.routeError(
            action: "retry_policy: { retry_back_off: { base_interval: 1s, max_interval: 0.5s } }",
            path: Self.retryPath + ".retry_back_off.max_interval")
        #expect(backOff?.message.contains("greater than or equal to the base_interval") == true)
        let base = Self.routeError(
            action: "retry_policy: { retry_back_off: { max_interval: 0.5s } }", path: Self.retryPath + ".retry_back_off"
        )
        #expect(base?.message.contains("missing required field 'base_interval'") == true)
        _ = Self.routeError(
            action: "retry_policy: { retry_back_off: { base_interval: 0s } }",
            path: Self.retryPath + ".retry_back_off.base_interval")
        _ = Self.routeError(
            action: "retry_policy: { host_selection_retry_max_attempts: -1 }",
            path: Self.retryPath + ".host_selection_retry_max_attempts")
        let other = Self.routeError(
            action: "retry_policy: { retry_host_predicate: [{ name: envoy.retry_host_predicates.omit_canary_hosts }] }",
            path: Self.retryPath + ".retry_host_predicate[0].name")
        #expect(other?.message.contains("not supported by Pilotfish yet") == true)
        _ = Self.routeError(
            action: """
                retry_policy:
                  retry_host_predicate: [{ name: x, typed_config: { "@type": type.googleapis.com/x.Y } }]
                """,
            path: Self.retryPath + ".retry_host_predicate[0].typed_config.@type")
        let priority = Self.routeError(
            action: "retry_policy: { retry_priority: { name: p } }", path: Self.retryPath + ".retry_priority")
        #expect(priority?.message.contains(Self.unsupported) == true)
        _ = Self.routeError(
            action: "retry_policy: { rate_limited_retry_back_off: {} }",
            path: Self.retryPath + ".rate_limited_retry_back_off")
    }

    // MARK: Hash policy, priority, idle timeout

    @Test func hashPoliciesPriorityAndIdleTimeout() throws {
        let f = try Self.forwardAction(
            """
            hash_policy:
            - header: { header_name: X-User }
            - cookie: { name: session }
            - connection_properties: { source_ip: true }
              terminal: true
            - query_parameter: { name: shard }
            - connection_properties: { source_ip: false }
            priority: HIGH
            idle_timeout: 0s
            """)
        #expect(f.hashPolicies.map(Self.describe) == ["header:x-user", "cookie:session", "source_ip!", "query:shard"])
        #expect(f.priority == .HIGH)
        // Zero is kept: it disables the stream idle timeout on this route.
        #expect(f.idleTimeout == .seconds(0))
        let plain = try Self.forwardAction("timeout: 1s")
        #expect(plain.hashPolicies.isEmpty && plain.priority == .DEFAULT && plain.idleTimeout == nil)
    }

    @Test func hashPolicyErrorsNameTheirPath() {
        let route = "virtual_hosts[0].routes[0].route"
        _ = Self.routeError(
            action: "hash_policy: [{ filter_state: { key: k } }]", path: route + ".hash_policy[0].filter_state")
        _ = Self.routeError(
            action: "hash_policy: [{ cookie: { name: c, ttl: 1s } }]", path: route + ".hash_policy[0].cookie.ttl")
        _ = Self.routeError(
            action: "hash_policy: [{ header: { header_name: h, regex_rewrite: {} } }]",
            path: route + ".hash_policy[0].header.regex_rewrite")
        let none = Self.routeError(action: "hash_policy: [{ terminal: true }]", path: route + ".hash_policy[0]")
        #expect(none?.message.contains("is required") == true)
        _ = Self.routeError(
            action: "hash_policy: [{ header: { header_name: \"\" } }]",
            path: route + ".hash_policy[0].header.header_name")
        _ = Self.routeError(action: "priority: LOW", path: route + ".priority")
    }

    // MARK: Virtual host and route fields

    @Test func virtualHostAndRouteRetryFields() throws {
        let config = try Self.routes(
            vhost: """
                retry_policy: { retry_on: connect-failure, num_retries: 2 }
                include_request_attempt_count: true
                include_attempt_count_in_response: true
                per_request_buffer_limit_bytes: 4096
                """,
            route: "per_request_buffer_limit_bytes: 1024")
        let vh = config.virtualHosts[0]
        #expect(vh.retryPolicy?.retryOn == .connectFailure && vh.retryPolicy?.numRetries == 2)
        #expect(vh.includeRequestAttemptCount && vh.includeAttemptCountInResponse)
        #expect(vh.perRequestBufferLimitBytes == 4096)
        #expect(vh.routes[0].perRequestBufferLimitBytes == 1024)
        let plain = try Self.routes()
        #expect(plain.virtualHosts[0].retryPolicy == nil)
        #expect(
            !plain.virtualHosts[0].includeRequestAttemptCount && !plain.virtualHosts[0].includeAttemptCountInResponse)
        #expect(plain.virtualHosts[0].perRequestBufferLimitBytes == nil)
        _ = Self.routeError(
            vhost: "retry_policy: { retry_on: nope }", path: "virtual_hosts[0].retry_policy.retry_on")
        _ = Self.routeError(
            route: "per_request_buffer_limit_bytes: -1",
            path: "virtual_hosts[0].routes[0].per_request_buffer_limit_bytes")
        _ = Self.routeError(vhost: "hedge_policy: {}", path: "virtual_hosts[0].hedge_policy")
    }

    // MARK: The router's decision

    @Test func theVirtualHostsRetryPolicyAppliesWhenTheRouteHasNone() throws {
        let config = try Self.routes(
            vhost: """
                retry_policy: { retry_on: reset, num_retries: 4 }
                include_request_attempt_count: true
                include_attempt_count_in_response: true
                per_request_buffer_limit_bytes: 2048
                """)
        let t = try #require(Self.target(config))
        #expect(t.retryPolicy?.retryOn == .reset && t.retryPolicy?.numRetries == 4)
        #expect(t.includeRequestAttemptCount && t.includeAttemptCountInResponse)
        #expect(t.perRequestBufferLimitBytes == 2048)
    }

    @Test func theRoutesChoicesWinOverTheVirtualHosts() throws {
        let config = try Self.routes(
            vhost: "retry_policy: { retry_on: reset, num_retries: 4 }\nper_request_buffer_limit_bytes: 2048",
            route: "per_request_buffer_limit_bytes: 512",
            action: """
                retry_policy: { retry_on: gateway-error }
                hash_policy: [{ header: { header_name: x-user }, terminal: true }]
                priority: HIGH
                idle_timeout: 3s
                """)
        let t = try #require(Self.target(config))
        // Envoy does not merge the two policies: the route's replaces the virtual host's whole.
        #expect(t.retryPolicy?.retryOn == .gatewayError && t.retryPolicy?.numRetries == 1)
        #expect(t.perRequestBufferLimitBytes == 512)
        #expect(t.hashPolicies.map(Self.describe) == ["header:x-user!"])
        #expect(t.priority == .HIGH)
        #expect(t.idleTimeout == .seconds(3))
        #expect(!t.includeRequestAttemptCount)
    }

    @Test func aRouteWithoutResilienceSettingsForwardsWithout() throws {
        let t = try #require(Self.target(try Self.routes()))
        #expect(t.retryPolicy == nil && t.hashPolicies.isEmpty && t.priority == .DEFAULT && t.idleTimeout == nil)
        #expect(t.perRequestBufferLimitBytes == nil)
    }

    // MARK: Connection manager

    @Test func streamIdleTimeout() throws {
        let hcm = { (b: Bootstrap) in b.listeners[0].connectionManager?.streamIdleTimeout }
        #expect(hcm(try Bootstrap.load(text: Self.bootstrap())) == .seconds(300))
        #expect(hcm(try Bootstrap.load(text: Self.bootstrap(hcm: "stream_idle_timeout: 12s"))) == .seconds(12))
        #expect(hcm(try Bootstrap.load(text: Self.bootstrap(hcm: "stream_idle_timeout: 0s"))) == .seconds(0))
        let text = Self.bootstrap(hcm: "stream_idle_timeout: soon")
        let e = #expect(throws: ConfigError.self) { try Bootstrap.load(text: text) }
        #expect(e?.path == ConfigDecodingTests.hcmPath + ".stream_idle_timeout")
        #expect(e?.line == Self.line(of: "stream_idle_timeout", in: text))
    }
}

/// The resilience examples in examples/resilience/ (the seed's 4.1, 4.7 and 4.8 settings) load as written.
@Suite struct ResilienceExamplesTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../examples/resilience").standardized

    @Test func seedRetryExampleLoadsWithItsPredicateWithoutTypedConfig() throws {
        let b = try Bootstrap.load(text: try String(contentsOf: Self.dir.appendingPathComponent("retry.yaml"), encoding: .utf8))
        guard case .httpConnectionManager(let hcm) = b.listeners[0].filterChains[0].network,
              case .forward(let f) = hcm.routeConfig.virtualHosts[0].routes[0].action,
              let policy = f.retryPolicy else {
            Issue.record("no retry policy on the route")
            return
        }
        #expect(policy.retryOn == [.fiveXX, .gatewayError, .connectFailure, .refusedStream])
        #expect(policy.numRetries == 3)
        #expect(policy.perTryTimeout == .seconds(2))
        #expect(policy.avoidPreviousHosts)
        #expect(policy.hostSelectionRetryMaxAttempts == 3)
    }

    @Test func seedCircuitBreakerExampleSetsBothPriorities() throws {
        let b = try Bootstrap.load(text: try String(contentsOf: Self.dir.appendingPathComponent("circuit-breakers.yaml"), encoding: .utf8))
        let t = b.clusters[0].circuitBreakers
        #expect(t.map(\.priority) == [.DEFAULT, .HIGH])
        #expect(t[0].maxConnections == 1000 && t[0].maxPendingRequests == 1000 && t[0].maxRequests == 1000 && t[0].maxRetries == 3)
        #expect(t[1].maxConnections == 2000 && t[1].maxRetries == 5)
    }

    @Test func seedWeightedExampleKeepsItsWeights() throws {
        let b = try Bootstrap.load(text: try String(contentsOf: Self.dir.appendingPathComponent("weighted.yaml"), encoding: .utf8))
        #expect(b.clusters[0].endpoints.map(\.weight) == [5, 2, 3])
        #expect(b.clusters[0].lbPolicy == .ROUND_ROBIN)
    }
}
