"""Writes the protobuf subset Pilotfish's xDS client decodes: Envoy's resource messages (Cluster,
ClusterLoadAssignment, RouteConfiguration, Listener, Secret), the typed_config messages, and the discovery
protocol's own, each with only the fields Pilotfish's config decoders know (`sidecar config-fields`), under the
public API's package names, file names and field numbers, which it reads from xds-protos (Envoy's generated
descriptors). A field on the wire that the subset lacks lands in unknown fields, and the client NACKs it.

Usage: xds_proto_subset.py CONFIG_FIELDS.json OUT_DIR SWIFT_REGISTRY_FILE
"""
import importlib
import json
import os
import pkgutil
import sys

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor as FD

# The resources xDS delivers, and the protocol's messages, with the fields the client uses.
ROOTS = [
    "envoy.config.cluster.v3.Cluster",
    "envoy.config.endpoint.v3.ClusterLoadAssignment",
    "envoy.config.route.v3.RouteConfiguration",
    "envoy.config.listener.v3.Listener",
    "envoy.extensions.transport_sockets.tls.v3.Secret",
]
PROTOCOL = {
    "envoy.service.discovery.v3.DiscoveryRequest":
        "version_info node resource_names type_url response_nonce error_detail",
    "envoy.service.discovery.v3.DiscoveryResponse": "version_info resources type_url nonce control_plane",
    "envoy.service.discovery.v3.DeltaDiscoveryRequest":
        "node type_url resource_names_subscribe resource_names_unsubscribe initial_resource_versions "
        "response_nonce error_detail",
    "envoy.service.discovery.v3.DeltaDiscoveryResponse":
        "system_version_info resources type_url removed_resources nonce control_plane",
    "envoy.service.discovery.v3.Resource": "name aliases version resource",
    "envoy.config.core.v3.ControlPlane": "identifier",
    "envoy.config.core.v3.Node": "id cluster metadata locality user_agent_name user_agent_version",
    "envoy.config.core.v3.Locality": "region zone sub_zone",
    "google.rpc.Status": "code message details",
}
WKT = ("google.protobuf.",)
SCALARS = {
    FD.TYPE_DOUBLE: "double", FD.TYPE_FLOAT: "float", FD.TYPE_INT64: "int64", FD.TYPE_UINT64: "uint64",
    FD.TYPE_INT32: "int32", FD.TYPE_FIXED64: "fixed64", FD.TYPE_FIXED32: "fixed32", FD.TYPE_BOOL: "bool",
    FD.TYPE_STRING: "string", FD.TYPE_BYTES: "bytes", FD.TYPE_UINT32: "uint32", FD.TYPE_SFIXED32: "sfixed32",
    FD.TYPE_SFIXED64: "sfixed64", FD.TYPE_SINT32: "sint32", FD.TYPE_SINT64: "sint64",
}


def load_pool():
    import envoy, udpa, xds  # noqa: E401 (xds-protos)
    for pkg in (envoy, xds, udpa):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if m.name.endswith("_pb2"):
                try:
                    importlib.import_module(m.name)
                except Exception:  # a module whose extension deps are missing: not one of ours
                    pass
    importlib.import_module("google.rpc.status_pb2")
    return descriptor_pool.Default()


def main():
    fields_path, out_dir, registry_path = sys.argv[1:4]
    pool = load_pool()
    wanted = {}  # message full name -> set of field names
    typed = set()  # messages that can be an Any's payload
    for m in json.load(open(fields_path)):
        wanted.setdefault(m["name"], set()).update(m["fields"])
        if m.get("type", "").startswith("type.googleapis.com/"):
            typed.add(m["type"][len("type.googleapis.com/"):])
    for name, fields in PROTOCOL.items():
        wanted.setdefault(name, set()).update(fields.split())

    def find(name):
        try:
            return pool.FindMessageTypeByName(name)
        except KeyError:
            return None

    selected = {}  # full name -> (descriptor, [fields])
    enums = {}
    dropped = []
    queue = [n for n in ROOTS + list(PROTOCOL) + sorted(typed)]
    while queue:
        name = queue.pop()
        if name in selected or name.startswith(WKT):
            continue
        d = find(name)
        if d is None:
            print(f"not in xds-protos, skipped: {name}", file=sys.stderr)
            continue
        keep = []
        for f in d.fields:
            if f.name not in wanted.get(name, ()):
                continue
            if f.type == FD.TYPE_MESSAGE:
                t = f.message_type
                if t.GetOptions().map_entry:
                    v = t.fields_by_name["value"]
                    if v.type == FD.TYPE_MESSAGE and not v.message_type.full_name.startswith(WKT):
                        queue.append(v.message_type.full_name)
                elif t.full_name.startswith(WKT):
                    pass
                elif t.full_name in wanted:
                    queue.append(t.full_name)
                else:
                    dropped.append(f"{name}.{f.name} ({t.full_name})")
                    continue
            elif f.type == FD.TYPE_ENUM:
                enums[f.enum_type.full_name] = f.enum_type
            keep.append(f)
        selected[name] = (d, keep)
    for line in sorted(dropped):
        print(f"field dropped (its message is not decoded): {line}", file=sys.stderr)

    # Files, as Envoy's: each holds its selected messages (and the shells of their unselected parents) and enums.
    files = {}

    def file_of(desc):
        return files.setdefault(desc.file.name, {"package": desc.file.package, "top": {}, "imports": set()})

    def node_for(desc):
        """The emission node of a message, creating shells for unselected parents."""
        f = file_of(desc)
        chain = []
        c = desc
        while c is not None:
            chain.append(c)
            c = c.containing_type
        nodes = f["top"]
        node = None
        for c in reversed(chain):
            node = nodes.setdefault(c.name, {"desc": c, "fields": None, "nested": {}, "enums": {}})
            nodes = node["nested"]
        return node

    for name, (d, keep) in selected.items():
        node_for(d)["fields"] = keep
    for name, e in enums.items():
        if e.containing_type is None:
            file_of(e).setdefault("enums", {})[e.name] = e
        else:
            node_for(e.containing_type)["enums"][e.name] = e

    def type_ref(f, here):
        if f.type == FD.TYPE_MESSAGE:
            t = f.message_type
            if t.GetOptions().map_entry:
                k, v = t.fields_by_name["key"], t.fields_by_name["value"]
                return f"map<{SCALARS[k.type]}, {type_ref(v, here)}>"
            if t.file.name != here:
                files[here]["imports"].add(t.file.name)
            return "." + t.full_name
        if f.type == FD.TYPE_ENUM:
            if f.enum_type.file.name != here:
                files[here]["imports"].add(f.enum_type.file.name)
            return "." + f.enum_type.full_name
        return SCALARS[f.type]

    def emit_enum(e, ind):
        out = [f"{ind}enum {e.name} {{"]
        if e.GetOptions().allow_alias:
            out.append(f"{ind}  option allow_alias = true;")
        for v in e.values:
            out.append(f"{ind}  {v.name} = {v.number};")
        out.append(f"{ind}}}")
        return out

    def is_repeated(f):
        return f.is_repeated if hasattr(f, "is_repeated") else f.label == FD.LABEL_REPEATED

    def emit_field(f, ind, here):
        t = type_ref(f, here)
        label = ""
        if is_repeated(f) and not t.startswith("map<"):
            label = "repeated "
        elif f.containing_oneof is not None and f.containing_oneof.name.startswith("_") and \
                len(f.containing_oneof.fields) == 1 and getattr(f, "has_presence", False):
            label = "optional "
        return f"{ind}{label}{t} {f.name} = {f.number};"

    def emit_message(node, ind, here):
        d = node["desc"]
        out = [f"{ind}message {d.name} {{"]
        fields = node["fields"] or []
        oneofs = {}
        for f in fields:
            o = f.containing_oneof
            real = o is not None and not (o.name.startswith("_") and len(o.fields) == 1 and f.name == o.name[1:])
            if real:
                oneofs.setdefault(o.name, []).append(f)
        done = set()
        for f in fields:
            o = f.containing_oneof
            if o is not None and o.name in oneofs:
                if o.name in done:
                    continue
                done.add(o.name)
                out.append(f"{ind}  oneof {o.name} {{")
                for g in oneofs[o.name]:
                    out.append(emit_field(g, ind + "    ", here).replace("repeated ", ""))
                out.append(f"{ind}  }}")
            else:
                out.append(emit_field(f, ind + "  ", here))
        for e in node["enums"].values():
            out += emit_enum(e, ind + "  ")
        for n in node["nested"].values():
            out += emit_message(n, ind + "  ", here)
        out.append(f"{ind}}}")
        return out

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name in sorted(files):
        f = files[name]
        body = []
        for e in f.get("enums", {}).values():
            body += emit_enum(e, "")
        for n in f["top"].values():
            body += emit_message(n, "", name)
        if name == "envoy/service/discovery/v3/ads.proto" or any(
                n == "DiscoveryRequest" for n in f["top"]):
            pass
        head = [
            "// Pilotfish's subset of Envoy's API: only the fields Pilotfish decodes, with the public package,",
            "// file name and field numbers. Written by scripts/gen-xds-protos; do not edit.",
            'syntax = "proto3";',
            "",
            f"package {f['package']};",
            "",
        ]
        head += [f'import "{i}";' for i in sorted(f["imports"])]
        path = os.path.join(out_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as out:
            out.write("\n".join(head + [""] + body) + "\n")
        written.append(name)

    def swift_name(d):
        prefix = "_".join("".join(p[:1].upper() + p[1:] for p in comp.split("_")) for comp in d.file.package.split("."))
        chain = []
        c = d
        while c is not None:
            chain.append(c.name)
            c = c.containing_type
        return prefix + "_" + ".".join(reversed(chain))

    payloads = sorted(set(ROOTS) | {t for t in typed if t in selected})
    with open(registry_path, "w") as out:
        out.write("// Written by scripts/gen-xds-protos; do not edit.\nimport SwiftProtobuf\n\n")
        out.write("/// Every message of the subset that can be an `Any`'s payload: the resources and the typed_config\n")
        out.write("/// messages. An `Any` of another type is refused, naming the type.\n")
        out.write("public enum XDSAnyTypes {\n    public static let all: [any SwiftProtobuf.Message.Type] = [\n")
        for t in payloads:
            out.write(f"        {swift_name(selected[t][0])}.self,\n")
        out.write("    ]\n\n")
        out.write("    /// The subset's field names by message and number, to name the path to a refused field.\n")
        out.write("    public static let fieldNames: [String: [Int: String]] = [\n")
        for name in sorted(selected):
            d, keep = selected[name]
            if keep:
                pairs = ", ".join(f'{f.number}: "{f.name}"' for f in sorted(keep, key=lambda f: f.number))
                out.write(f'        "{name}": [{pairs}],\n')
        out.write("    ]\n}\n")
    print("\n".join(written))


if __name__ == "__main__":
    main()
