/// The fields each config message's decoder reads (supported or refused as not supported yet), so that a field
/// no decoder knows can be named before anything else is said about its mapping, even when decoding stops before
/// `finish()` would have found it: a typo (`prefx: /`) is reported as itself, with the closest known name, rather
/// than as the "one of prefix, path, ... is required" it causes.
///
/// A mapping is matched to its message by the fields its decoder has asked for so far (and by `@type`, for the
/// `Any` messages in `typed_config`): every message whose list holds all of them is a candidate, and a field is
/// unknown only when no candidate has it. A mapping that matches no message is not judged early; `finish()` still
/// reports every field its decoder did not read.
///
/// Keep these lists in step with the decoders: `ConfigErrorTests` checks that every field name a decoder asks for
/// is listed here, and (decoding the examples and a config with most messages in it) that each mapping's fields
/// fit one of the messages.
package enum ConfigFields {
    package struct Message: Sendable {
        package let name: String
        /// The `@type` of a `typed_config` message, which picks it out from the others.
        package let type: String?
        package let fields: Set<String>

        package init(_ name: String, type: String? = nil, _ fields: String) {
            self.name = name
            self.type = type
            self.fields = Set(fields.split(whereSeparator: \.isWhitespace).map(String.init))
        }
    }

    /// The fields of the message(s) that a mapping with `@type` `type` (if any), whose decoder has asked for
    /// `queried` so far, can be, among these and the HTTP filters' (`httpFilters`); nil when no message fits.
    package static func known(queried: Set<String>, type: String?, httpFilters: [Message] = []) -> Set<String>? {
        let candidates = (messages + httpFilters).filter { m in
            if let type, m.type != type { return false }
            return queried.isSubset(of: m.fields)
        }
        guard !candidates.isEmpty else { return nil }
        return candidates.reduce(into: Set<String>()) { $0.formUnion($1.fields) }
    }

    /// Every field name in the lists.
    package static func allNames(with httpFilters: HTTPFilterCatalog) -> Set<String> {
        (messages + httpFilters.fields).reduce(into: []) { $0.formUnion($1.fields) }
    }

    package static let headerMutations = """
        request_headers_to_add request_headers_to_remove response_headers_to_add response_headers_to_remove
        """

    /// Every message but the HTTP filters' own, which are declared with their registrations and come with the
    /// decoding's `HTTPFilterCatalog`.
    package static let messages: [Message] = coreMessages + tracingMessages + [
        Message("envoy.config.route.v3.FilterConfig", type: HTTPFilterCatalog.routeFilterConfigType,
                "config is_optional disabled"),
        // Router/RateLimitPolicy.swift
        Message("envoy.config.route.v3.RateLimit", "stage disable_key actions limit hits_addend apply_on_stream_done"),
        Message("envoy.config.route.v3.RateLimit.Action", """
            source_cluster destination_cluster request_headers remote_address generic_key header_value_match
            dynamic_metadata metadata extension masked_remote_address query_parameter_value_match query_parameters
            """),
        Message("envoy.config.route.v3.RateLimit.Action.RequestHeaders", "header_name descriptor_key skip_if_absent"),
        Message("envoy.config.route.v3.RateLimit.Action.GenericKey", "descriptor_value descriptor_key"),
        Message("envoy.config.route.v3.RateLimit.Action.HeaderValueMatch", """
            descriptor_value descriptor_key expect_match headers
            """),
        // Router/MirrorPolicy.swift
        Message("envoy.config.route.v3.RouteAction.RequestMirrorPolicy", """
            cluster cluster_header runtime_fraction trace_sampled disable_shadow_host_suffix_append
            request_headers_mutations host_rewrite_literal
            """),
        // Runtime/Runtime.swift
        Message("envoy.config.bootstrap.v3.LayeredRuntime", "layers"),
        Message("envoy.config.bootstrap.v3.RuntimeLayer", "name static_layer disk_layer admin_layer rtds_layer"),
        // MetadataMatcher.swift
        Message("envoy.type.matcher.v3.MetadataMatcher", "filter path value invert"),
        Message("envoy.type.matcher.v3.MetadataMatcher.PathSegment", "key"),
        Message("envoy.type.matcher.v3.ValueMatcher", """
            null_match double_match string_match bool_match present_match list_match or_match
            """),
        Message("envoy.type.matcher.v3.DoubleMatcher", "range exact"),
        Message("envoy.type.v3.DoubleRange", "start end"),
        Message("envoy.type.matcher.v3.ListMatcher", "one_of"),
        Message("envoy.type.matcher.v3.OrMatcher", "value_matchers"),
        // RouteCheck/RouteCheckTestFile.swift: Envoy's router_check_tool test file (validation.proto).
        Message("envoy.RouterCheckToolSchema.Validation", "tests runtime"),
        Message("envoy.RouterCheckToolSchema.ValidationItem", "test_name input validate"),
        Message("envoy.RouterCheckToolSchema.ValidationInput", """
            authority path method random_value ssl internal runtime additional_request_headers
            additional_response_headers dynamic_metadata
            """),
        Message("envoy.RouterCheckToolSchema.DynamicMetadata", "metadata_namespace typed_value value allow_overwrite"),
        Message("envoy.RouterCheckToolSchema.ValidationAssert", """
            cluster_name virtual_cluster_name virtual_host_name host_rewrite path_rewrite path_redirect code_redirect
            request_header_fields response_header_fields request_header_matches response_header_matches timeout
            route_metadata
            """),
        Message("envoy.RouterCheckToolSchema.MetadataAssert", "namespace key value"),
    ]

    package static let coreMessages: [Message] = [
        // Bootstrap+Decoding.swift
        Message("envoy.config.bootstrap.v3.Bootstrap", """
            dynamic_resources cluster_manager stats_sinks stats_config layered_runtime overload_manager tracing
            watchdog watchdogs hds_config flags_path stats_flush_interval bootstrap_extensions fatal_actions
            default_socket_interface inline_headers admin static_resources node
            """),
        Message("envoy.config.bootstrap.v3.Admin", "access_log profile_path socket_options ignore_global_conn_limit address"),
        Message("envoy.config.bootstrap.v3.Bootstrap.StaticResources", "secrets listeners clusters"),
        // Discovery/ConfigSource.swift, Discovery/DiscoveryFile.swift
        Message("envoy.config.bootstrap.v3.Bootstrap.DynamicResources", """
            lds_config lds_resources_locator cds_config cds_resources_locator ads_config default_config_source
            """),
        Message("envoy.config.core.v3.ConfigSource", """
            authorities path path_config_source api_config_source ads self initial_fetch_timeout
            resource_api_version
            """),
        Message("envoy.config.core.v3.PathConfigSource", "path watched_directory"),
        // `ads: {}`: no fields.
        Message("envoy.config.core.v3.AggregatedConfigSource", ""),
        Message("envoy.config.core.v3.ApiConfigSource", """
            api_type transport_api_version cluster_names grpc_services refresh_delay request_timeout
            rate_limit_settings set_node_on_first_message_only config_validators
            """),
        Message("envoy.config.cluster.v3.Cluster.EdsClusterConfig", "eds_config service_name"),
        Message("envoy.extensions.filters.network.http_connection_manager.v3.Rds", "config_source route_config_name"),
        Message("envoy.config.core.v3.WatchedDirectory", "path"),
        Message("envoy.service.discovery.v3.DiscoveryResponse", """
            version_info resources canary type_url nonce control_plane resource_errors
            """),
        // OverloadManagerConfig.swift
        Message("envoy.config.overload.v3.OverloadManager", """
            refresh_interval resource_monitors actions buffer_factory_config loadshed_points
            """),
        Message("envoy.config.overload.v3.ResourceMonitor", "name typed_config"),
        Message("envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                type: OverloadManagerConfig.downstreamConnectionsType, "max_active_downstream_connections"),
        Message("envoy.config.core.v3.Node", """
            metadata dynamic_parameters locality user_agent_name user_agent_version user_agent_build_version
            extensions client_features listening_addresses id cluster
            """),
        Message("envoy.config.core.v3.Address", "pipe envoy_internal_address socket_address"),
        Message("envoy.config.core.v3.SocketAddress", """
            named_port resolver_name ipv4_compat network_namespace_filepath protocol address port_value
            """),

        // Cluster+Decoding.swift, Cluster+ResilienceDecoding.swift
        Message("envoy.config.cluster.v3.Cluster", """
            transport_socket_matches transport_socket_matcher http2_protocol_options http_protocol_options
            upstream_http_protocol_options protocol_selection lb_subset_config original_dst_lb_config
            load_balancing_policy cluster_type eds_cluster_config upstream_connection_options dns_resolvers
            dns_resolution_config typed_dns_resolver_config use_tcp_for_dns_lookups respect_dns_ttl
            dns_failure_refresh_rate dns_jitter track_timeout_budgets track_cluster_stats preconnect_policy
            close_connections_on_host_health_failure ignore_health_on_host_removal filters metadata alt_stat_name
            lrs_server lrs_report_endpoint_metrics connection_pool_per_downstream_connection wait_for_warm_on_init
            hosts upstream_config stats_matcher per_connection_buffer_high_watermark_timeout queuing_policies
            name type connect_timeout lb_policy health_checks outlier_detection circuit_breakers dns_refresh_rate
            dns_lookup_family per_connection_buffer_limit_bytes load_assignment upstream_bind_config
            cleanup_interval transport_socket
            ring_hash_lb_config maglev_lb_config least_request_lb_config round_robin_lb_config common_lb_config
            common_http_protocol_options typed_extension_protocol_options max_requests_per_connection
            """),
        Message("envoy.config.core.v3.BindConfig", """
            freebind socket_options extra_source_addresses additional_source_addresses local_address_selector
            source_address
            """),
        Message("envoy.config.endpoint.v3.ClusterLoadAssignment", "policy named_endpoints cluster_name endpoints"),
        Message("envoy.config.endpoint.v3.LocalityLbEndpoints", """
            locality load_balancing_weight priority metadata proximity leds_cluster_locality_config lb_endpoints
            """),
        Message("envoy.config.endpoint.v3.LbEndpoint", "health_status metadata endpoint_name load_balancing_weight endpoint"),
        Message("envoy.config.endpoint.v3.Endpoint", "health_check_config additional_addresses hostname address"),
        Message("envoy.config.endpoint.v3.Endpoint.HealthCheckConfig",
                "hostname address disable_active_health_check port_value"),
        Message("envoy.config.core.v3.Locality", "region zone sub_zone"),
        Message("envoy.config.cluster.v3.Cluster.RoundRobinLbConfig", "slow_start_config"),
        Message("envoy.config.cluster.v3.Cluster.LeastRequestLbConfig", "slow_start_config choice_count active_request_bias"),
        Message("envoy.config.core.v3.RuntimeDouble", "default_value runtime_key"),
        Message("envoy.config.cluster.v3.Cluster.RingHashLbConfig", "minimum_ring_size maximum_ring_size hash_function"),
        Message("envoy.config.cluster.v3.Cluster.MaglevLbConfig", "table_size"),
        Message("envoy.config.cluster.v3.Cluster.CommonLbConfig", """
            zone_aware_lb_config locality_weighted_lb_config update_merge_window ignore_new_hosts_until_first_hc
            close_connections_on_host_set_change consistent_hashing_lb_config override_host_status
            healthy_panic_threshold
            """),
        Message("envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig", ""),
        Message("envoy.config.cluster.v3.OutlierDetection", """
            monitors detect_degraded_hosts interval base_ejection_time max_ejection_time_jitter max_ejection_time
            consecutive_5xx consecutive_gateway_failure consecutive_local_origin_failure success_rate_minimum_hosts
            success_rate_request_volume success_rate_stdev_factor failure_percentage_minimum_hosts
            failure_percentage_request_volume max_ejection_percent enforcing_consecutive_5xx
            enforcing_consecutive_gateway_failure enforcing_consecutive_local_origin_failure enforcing_success_rate
            enforcing_local_origin_success_rate failure_percentage_threshold enforcing_failure_percentage
            enforcing_failure_percentage_local_origin split_external_local_origin_errors
            successful_active_health_check_uneject_host always_eject_one_host
            """),
        Message("envoy.config.cluster.v3.CircuitBreakers", "per_host_thresholds thresholds"),
        Message("envoy.config.cluster.v3.CircuitBreakers.Thresholds", """
            max_connection_pools priority max_connections max_pending_requests max_requests max_retries
            retry_budget track_remaining
            """),
        Message("envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget",
                "budget_interval budget_percent min_retry_concurrency"),
        Message("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", type: UpstreamHTTPProtocolOptions.typedOptionsType, """
            @type upstream_http_protocol_options http_filters header_validation_config outlier_detection
            request_mirror_policies hash_policy retry_policy explicit_http_config use_downstream_protocol_config
            auto_config common_http_protocol_options
            """),
        Message("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig",
                "http2_protocol_options http3_protocol_options http_protocol_options"),
        Message("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig",
                "http_protocol_options http2_protocol_options http3_protocol_options alternate_protocols_cache_options"),
        Message("envoy.config.core.v3.Http1ProtocolOptions", """
            allow_absolute_url accept_http_10 default_host_for_http_10 header_key_format enable_trailers
            allow_chunked_length override_stream_error_on_invalid_http_message send_fully_qualified_url
            use_balsa_parser allow_custom_methods ignore_http_11_upgrade
            """),
        Message("envoy.config.core.v3.HttpProtocolOptions", """
            max_connection_duration_jitter max_headers_count max_response_headers_kb max_stream_duration
            headers_with_underscores_action idle_timeout max_connection_duration max_requests_per_connection
            """),

        // ConfigValue.swift, ConfigValue+WellKnownTypes.swift
        Message("google.protobuf.Duration", "seconds nanos"),
        Message("envoy.type.v3.Percent", "value"),

        // HealthCheckConfig+Decoding.swift
        Message("envoy.config.core.v3.HealthCheck", """
            name interval_jitter_percent alt_port grpc_health_check custom_health_check no_traffic_healthy_interval
            unhealthy_edge_interval healthy_edge_interval event_log_path event_logger event_service
            always_log_health_check_failures always_log_health_check_success tls_options
            transport_socket_match_criteria timeout interval unhealthy_threshold healthy_threshold
            http_health_check tcp_health_check interval_jitter initial_jitter no_traffic_interval unhealthy_interval
            reuse_connection
            """),
        Message("envoy.config.core.v3.HealthCheck.Payload", "text binary"),
        Message("envoy.config.core.v3.HealthCheck.HttpHealthCheck", """
            send receive response_buffer_size request_headers_to_add request_headers_to_remove retriable_statuses
            use_alpn_protocol service_name_matcher codec_client_type path host expected_statuses method
            """),
        Message("envoy.type.v3.Int64Range", "start end"),
        Message("envoy.config.core.v3.HealthCheck.TcpHealthCheck", "proxy_protocol_config send receive"),

        // Listener+Decoding.swift
        Message("envoy.config.listener.v3.Listener", """
            socket_options traffic_direction filter_chain_matcher connection_balance_config reuse_port
            enable_reuse_port access_log tcp_backlog_size enable_mptcp additional_addresses udp_listener_config
            api_listener stat_prefix drain_type metadata ignore_global_conn_limit
            max_connections_to_accept_per_socket_event tcp_fast_open_queue_length internal_listener
            listener_specifier name address per_connection_buffer_limit_bytes filter_chains default_filter_chain
            transparent freebind listener_filters listener_filters_timeout continue_on_listener_filters_timeout
            use_original_dst bind_to_port
            """),
        Message("envoy.config.listener.v3.ListenerFilter", "name typed_config filter_disabled config_discovery"),
        Message("envoy.extensions.filters.listener.original_dst.v3.OriginalDst", type: Listener.originalDstType,
                "@type local_redirect_address"),
        Message("envoy.extensions.filters.listener.original_src.v3.OriginalSrc", type: Listener.originalSrcType,
                "@type bind_port mark"),
        Message("envoy.extensions.filters.listener.http_inspector.v3.HttpInspector", type: Listener.httpInspectorType,
                "@type"),
        Message("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", type: Listener.tlsInspectorType,
                "@type"),
        Message("envoy.config.listener.v3.FilterChain", """
            transport_socket_connect_timeout metadata name filter_chain_match filters transport_socket
            """),
        Message("envoy.config.listener.v3.Filter", "name typed_config config_discovery"),
        Message("envoy.config.listener.v3.FilterChainMatch", """
            direct_source_prefix_ranges source_type source_ports address_suffix suffix_len destination_port
            prefix_ranges source_prefix_ranges transport_protocol server_names application_protocols
            """),
        Message("envoy.config.core.v3.CidrRange", "address_prefix prefix_len"),
        Message("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", type: Listener.tcpProxyType, """
            @type weighted_clusters on_demand metadata_match downstream_idle_timeout upstream_idle_timeout access_log
            max_connect_attempts hash_policy tunneling_config max_downstream_connection_duration
            access_log_flush_interval flush_access_log_on_connected access_log_options backoff_options
            proxy_protocol_tlvs max_early_data_bytes stat_prefix cluster idle_timeout
            """),
        Message("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                type: Listener.hcmType, """
            @type rds scoped_routes http2_protocol_options http3_protocol_options common_http_protocol_options tracing
            access_log access_log_options add_user_agent xff_num_trusted_hops skip_xff_append via
            generate_request_id preserve_external_request_id always_set_request_id_in_response
            forward_client_cert_details set_current_client_cert_details proxy_100_continue upgrade_configs
            normalize_path merge_slashes path_with_escaped_slashes_action request_id_extension local_reply_config
            strip_matching_host_port strip_any_host_port request_headers_timeout drain_timeout
            delayed_close_timeout internal_address_config server_header_transformation
            scheme_header_transformation max_request_headers_count stream_error_on_invalid_http_message
            original_ip_detection_extensions early_header_mutation_extensions strip_trailing_host_dot
            proxy_status_config typed_header_validation_config append_x_forwarded_port append_local_overload
            add_proxy_protocol_connection_state http_services request_timeout
            represent_ipv4_remote_address_as_ipv4_mapped_ipv6 internal_only_headers stat_prefix codec_type
            route_config http_filters http_protocol_options server_name use_remote_address max_request_headers_kb
            stream_idle_timeout
            """),
        Message("envoy.config.accesslog.v3.AccessLog", "name filter typed_config"),
        // AccessLog/AccessLogFilter+Decoding.swift
        Message("envoy.config.accesslog.v3.AccessLogFilter", """
            status_code_filter duration_filter not_health_check_filter traceable_filter runtime_filter and_filter
            or_filter header_filter response_flag_filter grpc_status_filter extension_filter metadata_filter
            log_type_filter
            """),
        Message("envoy.config.accesslog.v3.StatusCodeFilter", "comparison"),
        Message("envoy.config.accesslog.v3.ComparisonFilter", "op value"),
        Message("envoy.config.core.v3.RuntimeUInt32", "default_value runtime_key"),
        Message("envoy.config.accesslog.v3.ResponseFlagFilter", "flags"),
        Message("envoy.config.accesslog.v3.RuntimeFilter", "runtime_key percent_sampled use_independent_randomness"),
        Message("envoy.config.accesslog.v3.AndFilter", "filters"),
        Message("envoy.extensions.access_loggers.file.v3.FileAccessLog", type: AccessLogConfig.fileType, """
            @type path format json_format typed_json_format log_format access_log_options
            """),
        Message("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", type: AccessLogConfig.stdoutType,
                "@type log_format"),
        Message("envoy.extensions.access_loggers.stream.v3.StderrAccessLog", type: AccessLogConfig.stderrType,
                "@type log_format"),
        Message("envoy.config.core.v3.SubstitutionFormatString", """
            text_format text_format_source json_format omit_empty_values content_type formatters json_format_options
            """),
        Message("envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
                "name typed_config config_discovery is_optional disabled"),
        Message("envoy.extensions.filters.http.router.v3.Router", type: Listener.routerType, """
            @type dynamic_stats start_child_span upstream_log upstream_log_options suppress_envoy_headers
            strict_check_headers respect_expected_rq_timeout suppress_grpc_request_failure_code_stats
            upstream_http_filters
            """),

        // RBACFilterConfig+Decoding.swift, RBACRules+Decoding.swift
        Message("envoy.extensions.filters.http.rbac.v3.RBAC", type: RBACFilterConfig.httpType, """
            @type matcher shadow_matcher track_per_rule_stats rules_stat_prefix rules shadow_rules
            shadow_rules_stat_prefix
            """),
        Message("envoy.extensions.filters.network.rbac.v3.RBAC", type: RBACFilterConfig.networkType, """
            @type matcher shadow_matcher delay_deny stat_prefix enforcement_type rules shadow_rules
            shadow_rules_stat_prefix
            """),
        Message("envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit", type: ConnectionLimitConfig.type,
                "@type stat_prefix max_connections delay runtime_enabled"),
        Message("envoy.config.rbac.v3.RBAC", "audit_logging_options action policies"),
        Message("envoy.config.rbac.v3.Policy", "condition checked_condition cel_config permissions principals"),
        Message("envoy.config.rbac.v3.Permission", """
            metadata sourced_metadata matcher uri_template and_rules or_rules any header url_path destination_ip
            destination_port destination_port_range not_rule requested_server_name
            """),
        Message("envoy.config.rbac.v3.Permission.Set", "rules"),
        Message("envoy.config.rbac.v3.Principal", """
            metadata sourced_metadata filter_state custom and_ids or_ids any authenticated source_ip
            direct_remote_ip remote_ip header url_path not_id
            """),
        Message("envoy.config.rbac.v3.Principal.Set", "ids"),
        Message("envoy.config.rbac.v3.Principal.Authenticated", "principal_name"),
        Message("envoy.type.v3.Int32Range", "start end"),
        Message("envoy.type.matcher.v3.PathMatcher", "path"),
        // RBAC/Matcher/*+Decoding.swift: the RBAC filters' `matcher` / `shadow_matcher`
        Message("xds.type.matcher.v3.Matcher", "matcher_list matcher_tree on_no_match"),
        Message("xds.type.matcher.v3.Matcher.MatcherList", "matchers"),
        Message("xds.type.matcher.v3.Matcher.MatcherList.FieldMatcher", "predicate on_match"),
        Message("xds.type.matcher.v3.Matcher.MatcherList.Predicate",
                "single_predicate or_matcher and_matcher not_matcher"),
        Message("xds.type.matcher.v3.Matcher.MatcherList.Predicate.SinglePredicate", "input value_match custom_match"),
        Message("xds.type.matcher.v3.Matcher.MatcherList.Predicate.PredicateList", "predicate"),
        Message("xds.type.matcher.v3.Matcher.OnMatch", "matcher action keep_matching"),
        Message("xds.type.matcher.v3.Matcher.MatcherTree", "input exact_match_map prefix_match_map custom_match"),
        Message("xds.type.matcher.v3.Matcher.MatcherTree.MatchMap", "map"),
        Message("xds.core.v3.TypedExtensionConfig", "name typed_config"),
        Message("envoy.config.rbac.v3.Action", type: "type.googleapis.com/" + RBACMatchAction.typeName,
                "@type name action"),
        Message("envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                type: "type.googleapis.com/" + RBACMatchInput.headerInput, "@type header_name"),
        Message("envoy.extensions.matching.input_matchers.ip.v3.Ip",
                type: "type.googleapis.com/" + RBACInputMatcher.ipType, "@type cidr_ranges stat_prefix"),
    ] + RBACMatchInput.simple.keys.sorted().map { Message($0, type: "type.googleapis.com/" + $0, "@type") } + [

        // TLSConfig+Decoding.swift, SecretFile.swift
        Message("envoy.config.core.v3.TransportSocket", "config_discovery name typed_config"),
        Message("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer", type: TLSContextConfig.rawBufferType,
                "@type"),
        Message("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", type: TLSContextConfig.downstreamType, """
            @type require_sni session_ticket_keys session_ticket_keys_sds_secret_config
            disable_stateless_session_resumption disable_stateful_session_resumption session_timeout
            ocsp_staple_policy full_scan_certs_on_sni_mismatch prefer_client_ciphers common_tls_context
            require_client_certificate
            """),
        Message("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", type: TLSContextConfig.upstreamType, """
            @type auto_host_sni auto_sni_san_validation allow_renegotiation max_session_keys enforce_rsa_key_usage
            common_tls_context sni
            """),
        Message("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext", """
            tls_certificate_provider_instance tls_certificate_certificate_provider
            tls_certificate_certificate_provider_instance tls_certificate_selector custom_tls_certificate_selector
            validation_context_certificate_provider validation_context_certificate_provider_instance
            custom_handshaker key_log tls_params tls_certificates tls_certificate_sds_secret_configs
            validation_context validation_context_sds_secret_config combined_validation_context alpn_protocols
            """),
        Message("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext", """
            default_validation_context validation_context_sds_secret_config validation_context_certificate_provider
            validation_context_certificate_provider_instance
            """),
        Message("envoy.config.core.v3.DataSource", "inline_bytes environment_variable watched_directory filename inline_string"),
        Message("envoy.extensions.transport_sockets.tls.v3.TlsCertificate", """
            pkcs12 watched_directory private_key_provider password ocsp_staple signed_certificate_timestamp
            certificate_chain private_key
            """),
        Message("envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext", """
            ca_certificate_provider_instance system_root_certs watched_directory verify_certificate_spki
            verify_certificate_hash match_subject_alt_names require_signed_certificate_timestamp crl
            allow_expired_certificate custom_validator_config only_verify_leaf_cert_crl max_verify_depth
            trusted_ca trust_chain_verification match_typed_subject_alt_names
            """),
        Message("envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher", "oid san_type matcher"),
        Message("envoy.extensions.transport_sockets.tls.v3.TlsParameters", """
            signature_algorithms compliance_policies tls_minimum_protocol_version tls_maximum_protocol_version
            cipher_suites ecdh_curves
            """),
        Message("envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig", "name sds_config"),
        Message("envoy.config.core.v3.ConfigSource", """
            api_config_source ads self authorities initial_fetch_timeout resource_api_version path_config_source path
            """),
        Message("envoy.config.core.v3.PathConfigSource", "path watched_directory"),
        Message("envoy.config.cluster.v3.Cluster.EdsClusterConfig", "eds_config service_name"),
        Message("envoy.extensions.filters.network.http_connection_manager.v3.Rds", "config_source route_config_name"),
        Message("envoy.config.core.v3.WatchedDirectory", "path"),
        Message("envoy.service.discovery.v3.DiscoveryResponse", "version_info canary type_url nonce control_plane resources"),
        Message("envoy.extensions.transport_sockets.tls.v3.Secret", type: TLSContextConfig.secretType, """
            @type name session_ticket_keys generic_secret tls_certificate validation_context
            """),

        // RouteConfiguration+Decoding.swift and the route's parts
        Message("envoy.config.route.v3.RouteConfiguration", """
            vhds internal_only_headers validate_clusters max_direct_response_body_size_bytes
            cluster_specifier_plugins request_mirror_policies ignore_port_in_host_matching
            ignore_path_parameters_in_path_matching typed_per_filter_config most_specific_header_mutations_wins
            request_headers_to_add_mutations name virtual_hosts metadata
            """ + " " + headerMutations),
        Message("envoy.config.route.v3.VirtualHost", """
            virtual_clusters rate_limits cors typed_per_filter_config retry_policy_typed_config hedge_policy
            request_mirror_policies matcher include_is_timeout_retry_header request_body_buffer_limit
            route_specifiers name domains routes require_tls metadata retry_policy include_request_attempt_count
            include_attempt_count_in_response per_request_buffer_limit_bytes
            """ + " " + headerMutations),
        Message("envoy.config.route.v3.Route", """
            decorator typed_per_filter_config tracing stat_prefix filter_action non_forwarding_action
            request_body_buffer_limit route_specifiers name match route redirect direct_response metadata
            per_request_buffer_limit_bytes
            """ + " " + headerMutations),
        Message("envoy.config.route.v3.RouteMatch", """
            tls_context dynamic_metadata connect_matcher path_match_policy filter_state cookies prefix path
            safe_regex path_separated_prefix grpc case_sensitive headers query_parameters runtime_fraction
            """),
        Message("envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions", ""),
        Message("envoy.config.core.v3.RuntimeFractionalPercent", "default_value runtime_key"),
        Message("envoy.type.v3.FractionalPercent", "numerator denominator"),
        Message("envoy.config.route.v3.RouteAction", """
            retry_policy_typed_config cors rate_limits request_mirror_policies flush_timeout path_rewrite
            max_stream_duration max_grpc_timeout grpc_timeout_offset upgrade_configs internal_redirect_policy
            internal_redirect_action max_internal_redirects hedge_policy host_rewrite_header host_rewrite_path_regex
            append_x_forwarded_host metadata_match cluster_not_found_response_code include_vh_rate_limits
            early_data_policy cluster_specifier_plugin inline_cluster_specifier_plugin path_rewrite_policy
            host_rewrite request_body_buffer_limit cluster cluster_header weighted_clusters prefix_rewrite
            regex_rewrite host_rewrite_literal auto_host_rewrite timeout retry_policy hash_policy priority
            idle_timeout
            """),
        Message("envoy.type.matcher.v3.RegexMatchAndSubstitute", "pattern substitution"),
        Message("envoy.config.route.v3.WeightedCluster", """
            header_name random_value_specifier use_hash_policy runtime_key_prefix clusters total_weight
            """),
        Message("envoy.config.route.v3.WeightedCluster.ClusterWeight", """
            cluster_header metadata_match typed_per_filter_config host_rewrite_literal name weight
            """ + " " + headerMutations),
        Message("envoy.config.route.v3.DirectResponseAction", "status body body_format"),
        Message("envoy.config.route.v3.RedirectAction", """
            https_redirect scheme_redirect host_redirect port_redirect path_redirect prefix_rewrite regex_rewrite
            response_code strip_query
            """),
        Message("envoy.config.route.v3.RetryPolicy", """
            retry_priority retry_options_predicates rate_limited_retry_back_off refresh_cluster_on_retry retry_on
            num_retries per_try_timeout per_try_idle_timeout retry_back_off retry_host_predicate
            host_selection_retry_max_attempts retriable_status_codes retriable_headers retriable_request_headers
            """),
        Message("envoy.config.route.v3.RetryPolicy.RetryBackOff", "base_interval max_interval"),
        Message("envoy.config.route.v3.RetryPolicy.RetryHostPredicate", "name typed_config"),
        Message("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                type: RetryPolicyConfig.previousHostsType, "@type"),
        Message("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig",
                "upgrade_type filters enabled"),
        Message("envoy.config.route.v3.RouteAction.UpgradeConfig", "upgrade_type enabled connect_config"),
        Message("envoy.config.route.v3.RouteAction.UpgradeConfig.ConnectConfig", "proxy_protocol_config allow_post"),
        Message("envoy.config.route.v3.RouteAction.MaxStreamDuration",
                "max_stream_duration grpc_timeout_header_max grpc_timeout_header_offset"),
        Message("envoy.config.route.v3.RouteAction.HashPolicy", """
            filter_state header cookie connection_properties query_parameter terminal
            """),
        Message("envoy.config.route.v3.RouteAction.HashPolicy.Header", "regex_rewrite header_name"),
        Message("envoy.config.route.v3.RouteAction.HashPolicy.Cookie", "ttl path attributes name"),
        Message("envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties", "source_ip"),
        Message("envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter", "name"),
        Message("envoy.config.route.v3.HeaderMatcher", """
            name invert_match treat_missing_header_as_empty string_match present_match range_match exact_match
            prefix_match suffix_match contains_match safe_regex_match
            """),
        Message("envoy.config.route.v3.QueryParameterMatcher", "name string_match present_match"),
        Message("envoy.config.core.v3.HeaderValueOption", "header append append_action keep_empty_value"),
        Message("envoy.config.core.v3.HeaderValue", "key value raw_value"),
        Message("envoy.config.core.v3.Metadata", "typed_filter_metadata filter_metadata"),
        Message("envoy.type.matcher.v3.StringMatcher", "custom ignore_case exact prefix suffix contains safe_regex"),
        Message("envoy.type.matcher.v3.RegexMatcher", "google_re2 regex"),
        Message("envoy.type.matcher.v3.RegexMatcher.GoogleRE2", "max_program_size"),
    ]
}

extension ConfigFields {
    /// The name in `names` closest to `key` by edit distance (a transposition counts as one edit), if close
    /// enough to be the field that was meant: at most one edit for names of up to five characters, two up to ten,
    /// three beyond. `-` and `_` are the same and case is ignored, so `connect-timeout` finds `connect_timeout`.
    package static func closest(to key: String, among names: some Sequence<String>) -> String? {
        func normalized(_ s: String) -> [Character] {
            Array(s.lowercased().map { $0 == "-" ? "_" : $0 })
        }
        let k = normalized(key)
        var best: (name: String, distance: Int)?
        for name in names.sorted() where name != key {
            let n = normalized(name)
            let limit = n.count <= 5 ? 1 : n.count <= 10 ? 2 : 3
            guard abs(n.count - k.count) <= limit else { continue }
            let d = editDistance(k, n)
            if d <= limit, d < (best?.distance ?? Int.max) { best = (name, d) }
        }
        return best?.name
    }

    /// Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions.
    package static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }

    /// SidecarCore/Tracing: the connection manager's `tracing`, its tracers and the route `decorator`.
    package static let tracingMessages: [Message] = [
        Message("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing", """
            client_sampling random_sampling overall_sampling verbose max_path_tag_length custom_tags provider
            spawn_upstream_span operation upstream_operation
            """),
        Message("envoy.type.tracing.v3.CustomTag", "tag literal environment request_header metadata value"),
        Message("envoy.type.tracing.v3.CustomTag.Literal", "value"),
        Message("envoy.type.tracing.v3.CustomTag.Environment", "name default_value"),
        Message("envoy.type.tracing.v3.CustomTag.Header", "name default_value"),
        Message("envoy.config.trace.v3.Tracing.Http", "name typed_config"),
        Message("envoy.config.trace.v3.ZipkinConfig", type: TracingConfig.zipkinType, """
            @type collector_cluster collector_endpoint trace_id_128bit shared_span_context collector_endpoint_version
            collector_hostname split_spans_for_request trace_context_option collector_service
            """),
        Message("envoy.config.trace.v3.OpenTelemetryConfig", type: TracingConfig.openTelemetryType, """
            @type grpc_service http_service service_name resource_detectors sampler max_cache_size
            """),
        Message("envoy.config.core.v3.GrpcService", "envoy_grpc google_grpc timeout initial_metadata retry_policy"),
        Message("envoy.config.core.v3.GrpcService.EnvoyGrpc", """
            cluster_name authority retry_policy max_receive_message_length skip_envoy_headers
            """),
        Message("envoy.config.core.v3.HttpService", "http_uri request_headers_to_add"),
        Message("envoy.config.core.v3.HttpUri", "uri cluster timeout"),
        Message("envoy.config.route.v3.Decorator", "operation propagate"),
        // Downstream (the connection manager's) and upstream (a cluster's explicit_http_config or
        // use_downstream_protocol_config) HTTP/2 options.
        Message("envoy.config.core.v3.Http2ProtocolOptions", """
            hpack_table_size max_concurrent_streams initial_stream_window_size initial_connection_window_size
            allow_connect allow_metadata max_outbound_frames max_outbound_control_frames
            max_consecutive_inbound_frames_with_empty_payload max_inbound_priority_frames_per_stream
            max_inbound_window_update_frames_per_data_frame_sent stream_error_on_invalid_http_messaging
            override_stream_error_on_invalid_http_message custom_settings_parameters connection_keepalive
            use_oghttp2_codec max_metadata_size enable_huffman_encoding
            """),
    ]
}
