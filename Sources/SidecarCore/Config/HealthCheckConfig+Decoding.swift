/// Decoding of a cluster's `health_checks`, with the rules of Envoy 1.40's `core/v3/health_check.proto` and
/// of its HTTP and TCP health checkers (`health_checkers/http/health_checker_impl.cc`, `PayloadMatcher`).
extension HealthCheckConfig {
    /// `health_checks`. Envoy 1.40 runs several checks only when each has a `name`, and a name changes the
    /// checks' stat names (`health_check.name.<name>.*`); Pilotfish supports neither yet, so one check at most.
    package static func decodeList(_ value: ConfigValue) throws -> [HealthCheckConfig] {
        let items = try value.array()
        if items.count > 1 {
            throw items[1].error(
                "more than one health check (Envoy's named health checks) is valid in Envoy but is not supported "
                    + "by Pilotfish yet")
        }
        return try items.map(decode)
    }

    package static func decode(_ value: ConfigValue) throws -> HealthCheckConfig {
        let obj = try value.object()
        try obj.unsupported([
            "name", "interval_jitter_percent", "alt_port", "grpc_health_check", "custom_health_check",
            "unhealthy_edge_interval", "healthy_edge_interval", "event_log_path",
            "event_logger", "event_service", "always_log_health_check_failures", "always_log_health_check_success",
            "tls_options", "transport_socket_match_criteria",
        ])
        let timeout = try obj.required("timeout").positiveDuration()
        let interval = try obj.required("interval").positiveDuration()
        let unhealthy = try obj.required("unhealthy_threshold").uint32Int()
        let healthy = try obj.required("healthy_threshold").uint32Int()
        guard let (key, checker) = try obj.oneOf(["http_health_check", "tcp_health_check"]) else {
            fatalError("unreachable: oneOf is required")
        }
        let kind: Kind = key == "http_health_check" ? .http(try HTTP.decode(checker)) : .tcp(try TCP.decode(checker))
        var config = HealthCheckConfig(
            kind: kind, timeout: timeout, interval: interval, unhealthyThreshold: unhealthy, healthyThreshold: healthy)
        if let v = obj.optional("interval_jitter") { config.intervalJitter = try v.duration() }
        if let v = obj.optional("initial_jitter") { config.initialJitter = try v.duration() }
        if let v = obj.optional("no_traffic_interval") { config.noTrafficInterval = try v.positiveDuration() }
        if let v = obj.optional("no_traffic_healthy_interval") {
            config.noTrafficHealthyInterval = try v.positiveDuration()
        }
        if let v = obj.optional("unhealthy_interval") { config.unhealthyInterval = try v.positiveDuration() }
        if let v = obj.optional("reuse_connection") { config.reuseConnection = try v.bool() }
        try obj.finish()
        return config
    }

    /// `HealthCheck.Payload`: `text` is hex (Envoy: "invalid hex string"), `binary` is base64 bytes.
    package static func decodePayload(_ value: ConfigValue) throws -> [UInt8] {
        let obj = try value.object()
        guard let (key, v) = try obj.oneOf(["text", "binary"]) else { fatalError("unreachable: oneOf is required") }
        let bytes: [UInt8]
        if key == "text" {
            let text = try v.nonEmptyString()
            guard let decoded = Self.hex(text) else { throw v.error("invalid hex string '\(text)'") }
            bytes = decoded
        } else {
            bytes = try v.base64Bytes()
        }
        try obj.finish()
        return bytes
    }

    package static func hex(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard !digits.isEmpty, digits.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let high = nibble(digits[i]), let low = nibble(digits[i + 1]) else { return nil }
            out.append(high << 4 | low)
            i += 2
        }
        return out
    }
}

extension HealthCheckConfig.HTTP {
    /// `RequestMethod` names Envoy allows for a health check: every one but CONNECT (`not_in: 6`).
    /// METHOD_UNSPECIFIED means GET.
    package static let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"]

    package static func decode(_ value: ConfigValue) throws -> HealthCheckConfig.HTTP {
        let obj = try value.object()
        try obj.unsupported([
            "send", "receive", "response_buffer_size", "request_headers_to_add", "request_headers_to_remove",
            "retriable_statuses", "use_alpn_protocol", "service_name_matcher",
        ])
        if let codec = obj.optional("codec_client_type") {
            switch try codec.string() {
            case "HTTP1":
                break
            case let other where other == "HTTP2" || other == "HTTP3":
                throw codec.error(
                    "codec_client_type \(other) is a valid Envoy value but is not supported by Pilotfish yet")
            case let other:
                throw codec.error("unknown value '\(other)'; expected one of: HTTP1, HTTP2, HTTP3")
            }
        }
        let pathValue = try obj.required("path")
        let path = try pathValue.nonEmptyString()
        try Self.checkHeaderValue(path, pathValue)
        var host: String?
        if let hostValue = obj.optional("host") {
            let h = try hostValue.string()
            try Self.checkHeaderValue(h, hostValue)
            // Empty means the cluster's name, as in Envoy.
            host = h.isEmpty ? nil : h
        }
        var http = HealthCheckConfig.HTTP(host: host, path: path)
        if let statuses = obj.optional("expected_statuses") {
            // Envoy's HttpStatusChecker: given ranges replace the default 200; each must be within [100, 600).
            http.expectedStatuses = try statuses.array().map(Self.decodeStatusRange)
            if http.expectedStatuses.isEmpty { http.expectedStatuses = [200..<201] }
        }
        if let methodValue = obj.optional("method") {
            let m = try methodValue.string()
            switch m {
            case "METHOD_UNSPECIFIED": http.method = "GET"
            case "CONNECT": throw methodValue.error("CONNECT cannot be used for a health check")
            case _ where Self.methods.contains(m): http.method = m
            default:
                throw methodValue.error(
                    "unknown value '\(m)'; expected one of: METHOD_UNSPECIFIED, \(Self.methods.joined(separator: ", "))"
                )
            }
        }
        try obj.finish()
        return http
    }

    private static func decodeStatusRange(_ value: ConfigValue) throws -> Range<Int> {
        let obj = try value.object()
        let start = try obj.optional("start")?.int() ?? 0
        let end = try obj.optional("end")?.int() ?? 0
        try obj.finish()
        if start >= end {
            throw value.error(
                "invalid expected status range: expecting start < end, but found start=\(start) and end=\(end)")
        }
        if start < 100 {
            throw value.error("invalid expected status range: expecting start >= 100, but found start=\(start)")
        }
        if end > 600 {
            throw value.error("invalid expected status range: expecting end <= 600, but found end=\(end)")
        }
        return Int(start)..<Int(end)
    }

    /// `well_known_regex: HTTP_HEADER_VALUE`: no NUL, CR or LF.
    private static func checkHeaderValue(_ text: String, _ value: ConfigValue) throws {
        if ConfigValue.firstControlCharacter(in: text) != nil {
            throw value.error("must not contain NUL, CR or LF")
        }
    }
}

extension HealthCheckConfig.TCP {
    package static func decode(_ value: ConfigValue) throws -> HealthCheckConfig.TCP {
        let obj = try value.object()
        try obj.unsupported(["proxy_protocol_config"])
        let send = try obj.optional("send").map(HealthCheckConfig.decodePayload) ?? []
        let receive = try obj.list("receive").map(HealthCheckConfig.decodePayload)
        try obj.finish()
        return HealthCheckConfig.TCP(send: send, receive: receive)
    }
}
