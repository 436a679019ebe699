extension RBACMatchInput {
    package static let networkInputs = "envoy.extensions.matching.common_inputs.network.v3."
    package static let sslInputs = "envoy.extensions.matching.common_inputs.ssl.v3."
    package static let headerInput = "envoy.type.matcher.v3.HttpRequestHeaderMatchInput"

    /// The inputs Envoy 1.40's RBAC filters accept and Pilotfish reads, by message name.
    package static let simple: [String: RBACMatchInput] = [
        networkInputs + "SourceIPInput": .sourceIP,
        networkInputs + "SourcePortInput": .sourcePort,
        networkInputs + "DirectSourceIPInput": .directSourceIP,
        networkInputs + "DestinationIPInput": .destinationIP,
        networkInputs + "DestinationPortInput": .destinationPort,
        networkInputs + "ServerNameInput": .serverName,
        sslInputs + "UriSanInput": .uriSAN,
        sslInputs + "DnsSanInput": .dnsSAN,
        sslInputs + "SubjectInput": .subject,
    ]

    /// Inputs Envoy 1.40's RBAC filters accept that Pilotfish does not read yet (the network filter refuses
    /// `DynamicMetadataInput` as Envoy does).
    package static let notYetSupported: Set<String> = [
        networkInputs + "FilterStateInput", networkInputs + "NetworkNamespaceInput",
        networkInputs + "DynamicMetadataInput",
        "envoy.extensions.matching.common_inputs.environment_variable.v3.Config",
    ]

    /// Inputs Envoy registers for HTTP matching that its RBAC filters refuse.
    package static let refusedByRBAC: Set<String> = [
        networkInputs + "SourceTypeInput", "envoy.type.matcher.v3.HttpRequestTrailerMatchInput",
        "envoy.type.matcher.v3.HttpResponseHeaderMatchInput", "envoy.type.matcher.v3.HttpResponseTrailerMatchInput",
        "envoy.type.matcher.v3.HttpRequestQueryParamMatchInput",
    ]

    /// A `single_predicate.input` or `matcher_tree.input`, with the validation Envoy 1.40 applies (checked
    /// with `envoy --mode validate`). `forHTTP`: false for the network filter, which has no request headers.
    package static func decode(_ value: ConfigValue, forHTTP: Bool) throws -> RBACMatchInput {
        let ext = try TypedExtension.decode(value)
        let obj = ext.config
        let type = ext.typeName
        let input: RBACMatchInput
        if let simple = simple[type] {
            input = simple
        } else if type == headerInput && forHTTP {
            // Envoy lowercases the name and reads a header no request has when it is empty.
            input = .requestHeader(try obj.optional("header_name")?.string().lowercased() ?? "")
        } else if refusedByRBAC.contains(type) || type == headerInput
            || (!forHTTP && type == networkInputs + "DynamicMetadataInput")
        {
            throw ext.configValue.error(forHTTP
                ? "RBAC HTTP filter cannot match on '\(ext.typeURL)' (as in Envoy)"
                : "RBAC network filter cannot match '\(ext.typeURL)' (as in Envoy)")
        } else if notYetSupported.contains(type) {
            throw ext.configValue.error(
                "input \(type) is a valid Envoy input but is not supported by Pilotfish yet")
        } else if type == "xds.type.matcher.v3.HttpAttributesCelMatchInput" {
            throw ext.configValue.error("Unsupported data input type: cel_data_input (as in Envoy)")
        } else {
            // TransportProtocolInput and ApplicationProtocolInput are among these: Envoy 1.40's RBAC filters
            // have no such input.
            throw ext.unregistered()
        }
        try obj.finish()
        return input
    }
}
