// swift-tools-version:6.1
import PackageDescription

/// Every target compiles in Swift 6 language mode (set package-wide below).
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let grpcCore = Target.Dependency.product(name: "GRPCCore", package: "grpc-swift-2")
let grpcHTTP2 = Target.Dependency.product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport")
let grpcProtobuf = Target.Dependency.product(name: "GRPCProtobuf", package: "grpc-swift-protobuf")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let postgres = Target.Dependency.product(name: "PostgresNIO", package: "postgres-nio")
let connectionPool = Target.Dependency.product(name: "_ConnectionPoolModule", package: "postgres-nio")
let lifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let histogram = Target.Dependency.product(name: "Histogram", package: "hdrhistogram-swift")
let metrics = Target.Dependency.product(name: "Metrics", package: "swift-metrics")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let nioHTTP2 = Target.Dependency.product(name: "NIOHTTP2", package: "swift-nio-http2")
let nioHPACK = Target.Dependency.product(name: "NIOHPACK", package: "swift-nio-http2")
let certificateReloading = Target.Dependency.product(name: "NIOCertificateReloading", package: "swift-nio-extras")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")
let asn1 = Target.Dependency.product(name: "SwiftASN1", package: "swift-asn1")
let tracing = Target.Dependency.product(name: "Tracing", package: "swift-distributed-tracing")
let instrumentation = Target.Dependency.product(name: "Instrumentation", package: "swift-distributed-tracing")
let otel = Target.Dependency.product(name: "OTel", package: "swift-otel")

/// One library (RPC handlers, store, builder) and one small executable per service, so tests build
/// exactly what production runs.
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")

let services: [(name: String, folder: String, executable: String, extra: [Target.Dependency])] = [
  ("CustomerService", "Customer", "rapport-customer", []),
  ("OrderService", "Order", "rapport-order", []),
  ("SupportService", "Support", "rapport-support", []),
  ("AnalyticsService", "Analytics", "rapport-analytics", []),
  ("GatewayService", "Gateway", "rapport-gateway", [crypto]),  // API key hashes
]

let serviceTargets: [Target] = services.flatMap { service -> [Target] in
  [
    .target(
      name: service.name,
      dependencies: [
        "RapportCore", "RapportProtos", grpcCore, grpcHTTP2, grpcProtobuf, swiftProtobuf, postgres, logging, lifecycle,
      ] + service.extra,
      path: "Services/\(service.folder)/Sources"
    ),
    .executableTarget(
      name: service.executable,
      dependencies: [.target(name: service.name), "RapportCore", argumentParser],
      path: "Services/\(service.folder)/Main"
    ),
  ]
}

let package = Package(
  name: "rapport",
  platforms: [.macOS(.v15)],
  products: services.map { .executable(name: $0.executable, targets: [$0.executable]) } + [
    .executable(name: "rapport", targets: ["rapport"])
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    .package(url: "https://github.com/yaslab/CSV.swift.git", from: "2.5.2"),
    .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
    .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
    .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
    // OTLP over gRPC only: the HTTP exporter would pull in async-http-client for nothing.
    .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPGRPC"]),
  ],
  targets: serviceTargets + [
    .target(
      name: "RapportProtos",
      dependencies: [grpcCore, grpcProtobuf, swiftProtobuf],
      path: "Shared/RapportProtos",
      exclude: ["protos.sha256"]
    ),
    .target(
      name: "RapportBuildInfo",
      path: "Shared/RapportBuildInfo",
      plugins: ["BuildCommit"]
    ),
    .plugin(name: "BuildCommit", capability: .buildTool(), path: "Plugins/BuildCommit"),
    .target(name: "CMalloc", path: "Shared/CMalloc"),
    .target(
      name: "RapportCore",
      dependencies: [
        "CMalloc", "RapportBuildInfo", "RapportProtos", grpcCore, grpcHTTP2, grpcProtobuf, swiftProtobuf, postgres, lifecycle, unixSignals, logging,
        metrics, prometheus, nioCore, nioPosix, nioHTTP1, nioHTTP2, nioHPACK, argumentParser, connectionPool,
        certificateReloading, x509, tracing, instrumentation, otel,
      ],
      path: "Shared/RapportCore"
    ),
    .target(
      // Spawning PostgreSQL and the service executables: linked by the CLI and the tests only, so a
      // service binary carries none of it.
      name: "RapportLocal",
      dependencies: ["RapportCore", "RapportProtos", grpcCore, grpcHTTP2, postgres, logging, x509, asn1, crypto, nioCore],
      path: "Shared/RapportLocal"
    ),
    .target(
      name: "RapportTesting",
      dependencies: ["RapportCore", "RapportLocal", "RapportProtos", grpcCore, grpcHTTP2, postgres, logging, nioCore, nioPosix, nioHTTP2, nioHPACK],
      path: "Shared/RapportTesting"
    ),
    .executableTarget(
      name: "rapport",
      dependencies: [
        "RapportCore", "RapportLocal", "RapportProtos", grpcCore, grpcHTTP2, argumentParser, histogram, logging, lifecycle,
        swiftProtobuf, .product(name: "CSV", package: "CSV.swift"),
      ],
      path: "Services/CLI"
    ),
    .testTarget(
      name: "ServiceTests",
      dependencies: [
        "CustomerService", "OrderService", "SupportService", "AnalyticsService", "GatewayService",
        "RapportCore", "RapportLocal", "RapportTesting", "RapportProtos", grpcCore, grpcHTTP2, postgres, swiftProtobuf,
      ],
      path: "Tests/ServiceTests"
    ),
    .testTarget(
      name: "EndToEndTests",
      dependencies: ["RapportCore", "RapportLocal", "RapportTesting", "RapportProtos", grpcCore, grpcHTTP2],
      path: "Tests/EndToEndTests"
    ),
  ],
  swiftLanguageModes: [.v6]
)
