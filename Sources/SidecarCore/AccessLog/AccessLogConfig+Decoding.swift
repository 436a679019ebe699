extension AccessLogConfig {
    package static let fileType = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
    package static let stdoutType = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
    package static let stderrType = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"

    /// An `AccessLog` entry (connection manager, tcp_proxy, listener): the file, stdout and stderr loggers.
    /// Pilotfish's bound on the loggers of one `access_log` list (a stream's loggers are chosen as bits of a
    /// 64-bit mask on its way to the access log thread).
    package static let maxPerList = 64

    /// An `access_log` list, absent or not.
    package static func decodeList(_ value: ConfigValue?) throws -> [AccessLogConfig] {
        guard let value else { return [] }
        let items = try value.array()
        if items.count > maxPerList {
            throw value.error("at most \(maxPerList) access loggers per list are supported by Pilotfish; \(items.count) given")
        }
        return try items.map(decode)
    }

    package static func decode(_ value: ConfigValue) throws -> AccessLogConfig {
        let obj = try value.object()
        let filter = try obj.optional("filter").map(AccessLogFilter.decode)
        let name = try obj.optional("name")?.string() ?? ""
        let typed = try obj.required("typed_config")
        let to = try typed.object()
        let typeValue = try to.required("@type")
        let type = try typeValue.string()
        let destination: Destination
        switch type {
        case fileType:
            try to.unsupported(["format", "json_format", "typed_json_format", "access_log_options"])
            destination = .file(path: try to.required("path").nonEmptyString())
        case stdoutType:
            destination = .stdout
        case stderrType:
            destination = .stderr
        default:
            throw typeValue.error(
                "access logger \(name.isEmpty ? type : name) is not supported by Pilotfish yet (supported: "
                    + "envoy.access_loggers.file, envoy.access_loggers.stdout, envoy.access_loggers.stderr)")
        }
        var format = Format.text(try SubstitutionFormat(parsing: defaultFormat, missing: "-"))
        if let lf = to.optional("log_format") {
            format = try decodeFormat(lf)
        }
        try to.finish()
        try obj.finish()
        return AccessLogConfig(destination: destination, format: format, filter: filter)
    }

    /// A `SubstitutionFormatString`: inline text (`text_format_source.inline_string`, `text_format`) or a flat
    /// `json_format` of string values.
    private static func decodeFormat(_ value: ConfigValue) throws -> Format {
        let obj = try value.object()
        try obj.unsupported(["content_type", "formatters", "json_format_options"])
        let omitEmpty = try obj.optional("omit_empty_values")?.bool() ?? false
        let missing = omitEmpty ? "" : "-"
        let format: Format
        guard let (key, chosen) = try obj.oneOf(["text_format", "text_format_source", "json_format"]) else {
            fatalError("unreachable: oneOf is required")
        }
        switch key {
        case "text_format":
            let text = try chosen.string()
            format = .text(try SubstitutionFormat(parsing: text, at: chosen, missing: missing))
        case "text_format_source":
            let source = try chosen.object()
            try source.unsupported(["filename", "inline_bytes", "environment_variable", "watched_directory"])
            let inline = try source.required("inline_string")
            let text = try inline.string()
            try source.finish()
            format = .text(try SubstitutionFormat(parsing: text, at: inline, missing: missing))
        default:
            var fields: [(key: String, value: SubstitutionFormat)] = []
            for (k, v) in try chosen.map() {
                guard case .scalar = v.node else {
                    throw v.error("json_format values other than strings are not supported by Pilotfish yet")
                }
                fields.append((k, try SubstitutionFormat(parsing: try v.string(), at: v, missing: missing)))
            }
            // Envoy prints the keys sorted (a protobuf Struct's map order).
            fields.sort { $0.key < $1.key }
            format = .json(fields, omitEmpty: omitEmpty)
        }
        try obj.finish()
        return format
    }
}
