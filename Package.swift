// swift-tools-version:6.0
import PackageDescription

/// Every sidecar library target's settings.
let sidecarSwiftSettings: [SwiftSetting] = [
    // The hot path is single-threaded per event loop; dynamic exclusivity checks cost ~3 % of CPU there.
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "Pilotfish",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sidecar", targets: ["SidecarMain"]),
        .executable(name: "sidecar-init", targets: ["Init"]),
        .executable(name: "pilotfish-fuzz", targets: ["PilotfishFuzz"]),
        .library(name: "Sidecar", targets: ["Sidecar", "SidecarTracing", "SidecarUpstream", "SidecarCore"]),
        .library(name: "Intercept", targets: ["Intercept"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        // OTLP span export: gRPC (unary TraceService/Export) and the protobuf runtime for the generated messages.
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibcap",
            pkgConfig: "libcap",
            providers: [.apt(["libcap-dev"])]
        ),
        // zlib, brotli and zstd for the compressor and decompressor HTTP filters.
        .systemLibrary(
            name: "CCompression",
            pkgConfig: "zlib libbrotlienc libbrotlidec libzstd",
            providers: [.apt(["zlib1g-dev", "libbrotli-dev", "libzstd-dev"])]
        ),
        // What the sidecar and sidecar-init share: the capture defaults and the original-destination lookup.
        // Glibc only, no dependencies.
        .target(name: "MeshCapture"),
        // The sidecar library, in three targets whose dependencies only point down, so the compiler refuses a loop:
        //
        //   SidecarCore      the config model and its decoding (bootstrap, listeners, clusters, routes, RBAC
        //                    policies, TLS settings), stats, runtime, log, substitution formats, and the small
        //                    values every layer shares (cluster slots, random sources, connection security).
        //        ↑           Config decoding does not know the HTTP filters: the layer that implements them hands
        //        │           it their catalog (`HTTPFilterCatalog`), as Envoy's factory registry does.
        //   SidecarUpstream  clusters, connection pools, load balancing, health checks, outlier detection,
        //        ↑           circuit breakers, upstream TLS and the TLS contexts and secrets both sides use.
        //   Sidecar          listeners, HTTP connection manager and filters, the router's attempts, TCP proxy,
        //                    downstream TLS, admin, identity, and the server that wires them to event loops.
        .target(
            name: "SidecarCore",
            dependencies: [
                "MeshCapture",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: sidecarSwiftSettings
        ),
        .target(
            name: "SidecarUpstream",
            dependencies: [
                "SidecarCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: sidecarSwiftSettings
        ),
        // The xDS client's protobuf messages: Pilotfish's subset of Envoy's API (Protos/xds), generated by
        // scripts/gen-xds-protos and committed. Only SwiftProtobuf, so it compiles beside the rest.
        .target(
            name: "XDSMessages",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // Distributed tracing: trace contexts (W3C, B3), Envoy's sampling decision, spans, and their exporters
        // (Zipkin JSON v2 over HTTP, OTLP over gRPC or HTTP) with per-worker batching. The OTLP messages are
        // generated from opentelemetry-proto by scripts/gen-otlp-protos and committed.
        .target(
            name: "SidecarTracing",
            dependencies: [
                "SidecarCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            swiftSettings: sidecarSwiftSettings
        ),
        .target(
            name: "Sidecar",
            dependencies: [
                "Injection",
                "SidecarCore",
                "SidecarUpstream",
                "SidecarTracing",
                "XDSMessages",
                "CLibcap",
                "CCompression",
                "MeshCapture",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            swiftSettings: sidecarSwiftSettings
        ),
        // Kubernetes sidecar injection (`sidecar inject`, `sidecar webhook`): manifests in, injected manifests or
        // JSON patches out. No NIO: the webhook's server lives in Sidecar.
        .target(
            name: "Injection",
            dependencies: [
                "MeshCapture",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "SidecarMain",
            dependencies: [
                "Sidecar",
                "SidecarCore",
                "Injection",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Fuzz targets (scripts/fuzz): what reads untrusted input, each behind one `run(bytes)`. The test suite
        // replays their corpora; `pilotfish-fuzz` runs them under libFuzzer when built with -sanitize=fuzzer
        // and -D PILOTFISH_LIBFUZZER, and replays files otherwise.
        .target(
            name: "FuzzTargets",
            dependencies: [
                "Sidecar",
                "SidecarCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "PilotfishFuzz",
            dependencies: ["FuzzTargets"]
        ),
        .systemLibrary(
            name: "CNetfilter",
            pkgConfig: "libnftnl libmnl",
            providers: [.apt(["libnftnl-dev", "libmnl-dev"])]
        ),
        .target(
            name: "Intercept",
            dependencies: ["CNetfilter", "MeshCapture"]
        ),
        .executableTarget(
            name: "Init",
            dependencies: [
                "Intercept",
                "MeshCapture",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "MeshCaptureTests",
            dependencies: ["MeshCapture"]
        ),
        .testTarget(
            name: "InterceptTests",
            dependencies: ["Intercept"],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "SidecarTests",
            dependencies: [
                "Sidecar",
                "SidecarCore",
                "SidecarUpstream",
                "SidecarTracing",
                "CCompression",
                "Intercept",
                "MeshCapture",
                "Injection",
                "FuzzTargets",
                "XDSMessages",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            exclude: ["Injection/golden"]
        ),
    ]
)
