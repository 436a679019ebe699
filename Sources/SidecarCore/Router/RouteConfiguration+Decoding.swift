import Foundation

extension RouteConfiguration {
    /// Decodes a bare `RouteConfiguration` document (the form Envoy's router_check_tool reads).
    public static func load(text: String) throws -> RouteConfiguration {
        guard let node = try ConfigDocument.parse(text) else {
            throw ConfigError(path: "", line: nil, message: "the route configuration is empty")
        }
        return try decode(ConfigValue(node: node, path: ""))
    }

    package static func decode(_ value: ConfigValue) throws -> RouteConfiguration {
        let obj = try value.object()
        try obj.unsupported([
            "vhds", "max_direct_response_body_size_bytes",
            "cluster_specifier_plugins", "request_mirror_policies", "ignore_port_in_host_matching",
            "ignore_path_parameters_in_path_matching",
            "most_specific_header_mutations_wins", "request_headers_to_add_mutations",
        ])
        let name = try obj.optional("name")?.string() ?? ""
        let headers = try HeaderMutations.decode(obj)
        let hosts = try obj.list("virtual_hosts").map(VirtualHost.decode)
        let metadata = try obj.optional("metadata").map(Metadata.decode) ?? Metadata()
        let perFilter = try obj.value.httpFilters.decodePerFilterConfig(obj.optional("typed_per_filter_config"))
        let internalOnly = try obj.list("internal_only_headers").compactMap(decodeInternalOnlyHeader)
        let validateClusters = try obj.optional("validate_clusters").map { try $0.bool() }
        try obj.finish()
        var config = RouteConfiguration(name: name, virtualHosts: hosts, headers: headers)
        config.metadata = metadata
        config.typedPerFilterConfig = perFilter
        config.internalOnlyHeaders = internalOnly
        config.validateClusters = validateClusters
        config.formatsReadTiming = config.allHeaderMutations.contains { $0.readsStreamTiming }
        try config.buildDomainIndex(value)
        return config
    }

    private mutating func buildDomainIndex(_ value: ConfigValue) throws {
        var seen = Set<String>()
        for (i, vh) in virtualHosts.enumerated() {
            for (j, raw) in vh.domains.enumerated() {
                let d = raw.lowercased()
                let at = "virtual_hosts[\(i)].domains[\(j)]"
                if d == "*" {
                    if let claimed = defaultHost {
                        throw value.error(at: at, "Only a single wildcard domain is permitted in route \(name); "
                            + "'*' is already claimed by virtual host '\(virtualHosts[claimed].name)'")
                    }
                    defaultHost = i
                    continue
                }
                if !seen.insert(d).inserted {
                    throw value.error(
                        at: at, "Only unique values for domains are permitted. Duplicate entry of domain \(d)")
                }
                if d.hasPrefix("*") {
                    suffixDomains.append((String(d.dropFirst()), i))
                } else if d.hasSuffix("*") {
                    prefixDomains.append((String(d.dropLast()), i))
                } else {
                    exactDomains[d] = i
                }
            }
        }
        // Longest first; Envoy breaks no ties because duplicates are rejected above.
        suffixDomains.sort { $0.suffix.utf8.count > $1.suffix.utf8.count }
        prefixDomains.sort { $0.prefix.utf8.count > $1.prefix.utf8.count }
    }

    /// Every cluster a route names must exist, as Envoy checks for static clusters. `value` is this route
    /// configuration's place in the document, so the error names the field and its line.
    package func checkClusters(_ names: Set<String>, in value: ConfigValue) throws {
        for (vi, vh) in virtualHosts.enumerated() {
            for (ri, r) in vh.routes.enumerated() {
                guard case .forward(let f) = r.action else { continue }
                let at = "virtual_hosts[\(vi)].routes[\(ri)].route"
                switch f.cluster {
                case .named(let c) where !names.contains(c):
                    throw value.error(at: at + ".cluster", "route refers to unknown cluster '\(c)'")
                case .weighted(let ws, _):
                    for (wi, w) in ws.enumerated() where !names.contains(w.name) {
                        throw value.error(at: at + ".weighted_clusters.clusters[\(wi)].name",
                                          "route refers to unknown cluster '\(w.name)'")
                    }
                default:
                    break
                }
                for (mi, m) in f.mirrorPolicies.enumerated() where !names.contains(m.cluster) {
                    throw value.error(at: at + ".request_mirror_policies[\(mi)].cluster",
                                      "request mirror policy refers to unknown cluster '\(m.cluster)'")
                }
            }
        }
    }
}

extension VirtualHost {
    package static func decode(_ value: ConfigValue) throws -> VirtualHost {
        let obj = try value.object()
        try obj.unsupported([
            "retry_policy_typed_config",
            "hedge_policy", "request_mirror_policies", "matcher", "include_is_timeout_retry_header",
            "request_body_buffer_limit", "route_specifiers",
        ])
        let name = try obj.required("name").nonEmptyString()
        let domainsValue = try obj.required("domains")
        let domains = try domainsValue.array().map { try $0.nonEmptyString() }
        if domains.isEmpty { throw domainsValue.error("a virtual host needs at least one domain") }
        for (i, d) in domains.enumerated() where d != "*" && d.dropFirst().dropLast().contains("*") {
            throw ConfigValue(node: try domainsValue.array()[i].node, path: "\(domainsValue.path)[\(i)]")
                .error("'\(d)': a wildcard may only be the first or last character")
        }
        let routes = try obj.list("routes").map(Route.decode)
        let tls = try obj.optional("require_tls")?.enumValue(TLSRequirement.self) ?? .NONE
        let headers = try HeaderMutations.decode(obj)
        let metadata = try obj.optional("metadata").map(Metadata.decode) ?? Metadata()
        var vh = VirtualHost(name: name, domains: domains, routes: routes, requireTLS: tls, headers: headers,
                             metadata: metadata)
        vh.retryPolicy = try obj.optional("retry_policy").map(RetryPolicyConfig.decode)
        vh.includeRequestAttemptCount = try obj.optional("include_request_attempt_count")?.bool() ?? false
        vh.includeAttemptCountInResponse = try obj.optional("include_attempt_count_in_response")?.bool() ?? false
        vh.perRequestBufferLimitBytes = try obj.optional("per_request_buffer_limit_bytes")?.uint32Int()
        vh.typedPerFilterConfig = try obj.value.httpFilters.decodePerFilterConfig(obj.optional("typed_per_filter_config"))
        vh.virtualClusters = try obj.list("virtual_clusters").map(VirtualCluster.decode)
        vh.rateLimits = try obj.list("rate_limits").map(RateLimitPolicy.decode)
        // Deprecated in Envoy (which warns) but still honoured by its CORS filter: kept for it.
        vh.cors = try obj.optional("cors").map(CORSPolicy.decode)
        try obj.finish()
        return vh
    }
}

extension Route {
    package static func decode(_ value: ConfigValue) throws -> Route {
        let obj = try value.object()
        try obj.unsupported([
            "tracing", "stat_prefix", "filter_action",
            "non_forwarding_action", "request_body_buffer_limit", "route_specifiers",
        ])
        let name = try obj.optional("name")?.string()
        let match = try RouteMatch.decode(try obj.required("match"))
        guard let (key, v) = try obj.oneOf(["route", "redirect", "direct_response"]) else { fatalError("unreachable") }
        let action: RouteAction
        switch key {
        case "route": action = .forward(try ForwardAction.decode(v))
        case "redirect": action = .redirect(try Redirect.decode(v))
        default: action = .directResponse(try DirectResponse.decode(v))
        }
        let headers = try HeaderMutations.decode(obj)
        let metadata = try obj.optional("metadata").map(Metadata.decode) ?? Metadata()
        let bufferLimit = try obj.optional("per_request_buffer_limit_bytes")?.uint32Int()
        let perFilter = try obj.value.httpFilters.decodePerFilterConfig(obj.optional("typed_per_filter_config"))
        let decorator = try obj.optional("decorator").map(RouteDecorator.decode)
        try obj.finish()
        var route = Route(name: name, match: match, action: action, headers: headers, metadata: metadata,
                          perRequestBufferLimitBytes: bufferLimit)
        route.typedPerFilterConfig = perFilter
        route.decorator = decorator
        return route
    }
}

extension RouteMatch {
    package static func decode(_ value: ConfigValue) throws -> RouteMatch {
        let obj = try value.object()
        try obj.unsupported([
            "tls_context", "path_match_policy", "filter_state", "cookies",
        ])
        guard let (key, v) = try obj.oneOf(["prefix", "path", "safe_regex", "path_separated_prefix", "connect_matcher"])
        else { fatalError("unreachable") }
        let rule: PathRule
        switch key {
        case "connect_matcher":
            try v.object().finish()  // ConnectMatcher has no fields.
            rule = .connect
        case "prefix": rule = .prefix(try v.string())
        case "path": rule = .path(try v.string())
        case "safe_regex": rule = .regex(try StringMatcher.decodeRegexMatcher(v))
        default:
            let p = try v.string()
            if p.isEmpty || !p.hasPrefix("/") || (p.hasSuffix("/") && p != "/") || p.contains("?") || p.contains("#") {
                throw v.error("path_separated_prefix '\(p)' must start with '/', must not end with '/', and must not contain '?' or '#'")
            }
            rule = .separatedPrefix(p)
        }
        var grpc = false
        if let g = try obj.optional("grpc")?.object() {
            try g.finish()  // GrpcRouteMatchOptions has no fields.
            grpc = true
        }
        let caseSensitive = try obj.optional("case_sensitive")?.bool() ?? true
        let headers = try obj.list("headers").map(HeaderMatcher.decode)
        let query = try obj.list("query_parameters").map(QueryParameterMatcher.decode)
        var fraction: RuntimeFraction?
        if let rf = try obj.optional("runtime_fraction")?.object() {
            let dv = try rf.required("default_value").object()
            let numerator = UInt64(try dv.optional("numerator")?.uint32() ?? 0)
            var denominator: UInt64 = 100
            if let d = dv.optional("denominator") {
                switch try d.string() {
                case "HUNDRED": denominator = 100
                case "TEN_THOUSAND": denominator = 10_000
                case "MILLION": denominator = 1_000_000
                default: throw d.error("denominator must be HUNDRED, TEN_THOUSAND or MILLION")
                }
            }
            try dv.finish()
            let key = try rf.optional("runtime_key")?.string()
            try rf.finish()
            fraction = RuntimeFraction(runtimeKey: key, numerator: numerator, denominator: denominator)
        }
        let dynamicMetadata = try obj.list("dynamic_metadata").map(MetadataMatcher.decode)
        try obj.finish()
        return RouteMatch(path: rule, caseSensitive: caseSensitive, headers: headers, queryParameters: query,
                          runtimeFraction: fraction, grpc: grpc, dynamicMetadata: dynamicMetadata)
    }
}

extension ForwardAction {
    package static func decode(_ value: ConfigValue) throws -> ForwardAction {
        let obj = try value.object()
        try obj.unsupported([
            "retry_policy_typed_config", "flush_timeout",
            "path_rewrite",
            "internal_redirect_policy", "internal_redirect_action", "max_internal_redirects",
            "hedge_policy", "host_rewrite_header", "host_rewrite_path_regex", "append_x_forwarded_host",
            "metadata_match", "cluster_not_found_response_code", "include_vh_rate_limits", "early_data_policy",
            "cluster_specifier_plugin", "inline_cluster_specifier_plugin", "path_rewrite_policy", "host_rewrite",
            "request_body_buffer_limit",
        ])
        guard let (key, v) = try obj.oneOf(["cluster", "cluster_header", "weighted_clusters"]) else { fatalError("unreachable") }
        let choice: ClusterChoice
        switch key {
        case "cluster": choice = .named(try v.nonEmptyString())
        case "cluster_header": choice = .fromHeader(try v.nonEmptyString().lowercased())
        default: choice = try decodeWeighted(v)
        }
        // Envoy treats an empty prefix_rewrite as unset: the path is left alone.
        let prefixRewrite = try obj.optional("prefix_rewrite")?.requestTargetText().nilIfEmpty
        var regexRewrite: (CompiledRegex, String)?
        if let rr = try obj.optional("regex_rewrite")?.object() {
            let pattern = try StringMatcher.decodeRegexMatcher(try rr.required("pattern"))
            let sub = try rr.required("substitution").requestTargetText()
            try rr.finish()
            regexRewrite = (pattern, sub)
        }
        if prefixRewrite != nil && regexRewrite != nil {
            throw value.error("prefix_rewrite and regex_rewrite cannot both be set")
        }
        let (hostKey, hv) = try obj.oneOf(["host_rewrite_literal", "auto_host_rewrite"], required: false) ?? ("", nil)
        var literal: String?
        var auto = false
        if let hv {
            if hostKey == "host_rewrite_literal" {
                literal = try hv.nonEmptyString()
                _ = try hv.headerValueText()
            } else {
                auto = try hv.bool()
            }
        }
        let timeout = try obj.optional("timeout")?.duration() ?? .seconds(15)
        var action = ForwardAction(cluster: choice, prefixRewrite: prefixRewrite, regexRewrite: regexRewrite,
                                   hostRewriteLiteral: literal, autoHostRewrite: auto, timeout: timeout)
        action.retryPolicy = try obj.optional("retry_policy").map(RetryPolicyConfig.decode)
        action.hashPolicies = try obj.list("hash_policy").compactMap(HashPolicy.decode)
        action.priority = try obj.optional("priority")?.enumValue(CircuitBreakerThresholds.Priority.self) ?? .DEFAULT
        // Zero is kept: it disables the stream idle timeout for this route.
        action.idleTimeout = try obj.optional("idle_timeout")?.duration()
        // Deprecated in Envoy (which warns) but still honoured by its CORS filter: kept for it.
        action.cors = try obj.optional("cors").map(CORSPolicy.decode)
        action.rateLimits = try obj.list("rate_limits").map(RateLimitPolicy.decode)
        action.mirrorPolicies = try obj.list("request_mirror_policies").map(MirrorPolicy.decode)
        if let msd = try obj.optional("max_stream_duration")?.object() {
            if let v = msd.optional("max_stream_duration"), !(try v.duration()).isZero {
                throw v.error("max_stream_duration.max_stream_duration is a valid Envoy field but is not supported by "
                    + "Pilotfish yet (grpc_timeout_header_max and grpc_timeout_header_offset are)")
            }
            action.maxGRPCTimeout = try msd.optional("grpc_timeout_header_max")?.duration()
            action.grpcTimeoutOffset = try msd.optional("grpc_timeout_header_offset")?.duration()
            try msd.finish()
        }
        // The deprecated forms, which Envoy still reads when max_stream_duration does not set them.
        if action.maxGRPCTimeout == nil { action.maxGRPCTimeout = try obj.optional("max_grpc_timeout")?.duration() }
        if action.grpcTimeoutOffset == nil {
            action.grpcTimeoutOffset = try obj.optional("grpc_timeout_offset")?.duration()
        }
        for item in try obj.list("upgrade_configs") {
            let u = try item.object()
            let type = try u.required("upgrade_type").nonEmptyString().lowercased()
            action.upgradeConfigs[type] = try u.optional("enabled")?.bool() ?? true
            if let cc = try u.optional("connect_config")?.object() {
                // Terminate CONNECT here; the tunnel's own options are not supported yet.
                try cc.unsupported(["proxy_protocol_config", "allow_post"])
                try cc.finish()
                if type == "connect" { action.terminatesConnect = true }
            }
            try u.finish()
        }
        try obj.finish()
        return action
    }

    private static func decodeWeighted(_ value: ConfigValue) throws -> ClusterChoice {
        let obj = try value.object()
        try obj.unsupported(["header_name", "random_value_specifier", "use_hash_policy"])
        // Runtime overrides of the weights (`<prefix>.<cluster>`): Pilotfish has no runtime, so the configured
        // weights stand, as in Envoy when the runtime has no value for those keys.
        _ = try obj.optional("runtime_key_prefix")?.string()
        var clusters: [WeightedCluster] = []
        for item in try obj.list("clusters") {
            let c = try item.object()
            try c.unsupported(["cluster_header", "metadata_match", "typed_per_filter_config", "host_rewrite_literal"])
            let name = try c.required("name").nonEmptyString()
            let weight = UInt64(try c.optional("weight")?.uint32() ?? 0)
            let headers = try HeaderMutations.decode(c)
            try c.finish()
            clusters.append(WeightedCluster(name: name, weight: weight, headers: headers))
        }
        let sum = clusters.reduce(0) { $0 + $1.weight }
        if clusters.isEmpty || sum == 0 { throw value.error("weighted_clusters needs clusters with a total weight above 0") }
        if let tw = obj.optional("total_weight") {
            let t = UInt64(try tw.uint32())
            if t != sum { throw tw.error("total_weight \(t) does not equal the sum of the weights, \(sum)") }
        }
        try obj.finish()
        return .weighted(clusters, total: sum)
    }
}

extension DirectResponse {
    package static func decode(_ value: ConfigValue) throws -> DirectResponse {
        let obj = try value.object()
        let status = Int(try obj.required("status").int(min: 200, max: 599))
        var body: [UInt8]?
        if let b = try obj.optional("body")?.object() {
            try b.unsupported(["filename", "environment_variable"])
            if let (key, v) = try b.oneOf(["inline_string", "inline_bytes"]) {
                if key == "inline_string" {
                    body = Array(try v.string().utf8)
                } else {
                    guard let d = Data(base64Encoded: try v.string()) else { throw v.error("inline_bytes is not base64") }
                    body = Array(d)
                }
            }
            try b.finish()
        }
        try obj.unsupported(["body_format"])
        try obj.finish()
        return DirectResponse(status: status, body: body)
    }
}

extension Redirect {
    package static func decode(_ value: ConfigValue) throws -> Redirect {
        let obj = try value.object()
        var scheme: String?
        if let (key, v) = try obj.oneOf(["https_redirect", "scheme_redirect"], required: false) {
            if key == "https_redirect" {
                if try v.bool() { scheme = "https" }
            } else {
                _ = try v.nonEmptyString()
                scheme = try v.headerValueText().lowercased()
            }
        }
        let host = try obj.optional("host_redirect").map { v in
            _ = try v.nonEmptyString()
            return try v.headerValueText()
        }
        // Proto3 defaults mean "unset": port 0, an empty path_redirect or prefix_rewrite.
        let port = try obj.optional("port_redirect").map { Int(try $0.int(min: 0, max: 65535)) }
            .flatMap { $0 == 0 ? nil : $0 }
        var path = PathChange.none
        if let (key, v) = try obj.oneOf(["path_redirect", "prefix_rewrite", "regex_rewrite"], required: false) {
            switch key {
            case "path_redirect": path = try v.requestTargetText().nilIfEmpty.map { .path($0) } ?? .none
            case "prefix_rewrite": path = try v.requestTargetText().nilIfEmpty.map { .prefix($0) } ?? .none
            default:
                let rr = try v.object()
                let pattern = try StringMatcher.decodeRegexMatcher(try rr.required("pattern"))
                let sub = try rr.required("substitution").requestTargetText()
                try rr.finish()
                path = .regex(pattern, sub)
            }
        }
        var status = 301
        if let rc = obj.optional("response_code") {
            switch try rc.string() {
            case "MOVED_PERMANENTLY": status = 301
            case "FOUND": status = 302
            case "SEE_OTHER": status = 303
            case "TEMPORARY_REDIRECT": status = 307
            case "PERMANENT_REDIRECT": status = 308
            default: throw rc.error("unknown response_code; expected MOVED_PERMANENTLY, FOUND, SEE_OTHER, TEMPORARY_REDIRECT or PERMANENT_REDIRECT")
            }
        }
        let strip = try obj.optional("strip_query")?.bool() ?? false
        try obj.finish()
        return Redirect(scheme: scheme, host: host, port: port, path: path, status: status, stripQuery: strip)
    }
}

extension String {
    fileprivate var nilIfEmpty: String? { isEmpty ? nil : self }
}
