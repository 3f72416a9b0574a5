import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import ServiceLifecycle

/// `GET /metrics` in Prometheus text format on its own address (`--metrics-addr`), a plain HTTP/1.1
/// listener beside the gRPC one. Anything else is 404; it ends on graceful shutdown. Once bound it prints
/// "rapport-NAME metrics on host:port" on standard output, so port 0 (any free port) can be read back.
public final class MetricsEndpoint: Service {
  let name: String
  let address: HostPort
  let metrics: RPCMetrics
  let logger: Logger
  private let bound = Mutex<HostPort?>(nil)

  public init(name: String, address: HostPort, metrics: RPCMetrics, logger: Logger) {
    self.name = name
    self.address = address
    self.metrics = metrics
    self.logger = logger
  }

  public func run() async throws {
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .bind(host: address.host, port: address.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline()
          return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
            wrappingChannelSynchronously: channel)
        }
      }
    let local = server.channel.localAddress
    let address = local.flatMap { local in local.ipAddress.map { HostPort(host: $0, port: local.port ?? 0) } }
    bound.withLock { $0 = address }
    let text = address.map { "\($0)" } ?? "?"
    logger.info("metrics listening", metadata: ["address": "\(text)"])
    FileHandle.standardOutput.write(Data("rapport-\(name) metrics on \(text)\n".utf8))
    try await withGracefulShutdownHandler {
      try await withThrowingDiscardingTaskGroup { group in
        try await server.executeThenClose { connections in
          for try await connection in connections {
            group.addTask { await self.serve(connection) }
          }
        }
      }
    } onGracefulShutdown: {
      server.channel.close(promise: nil)
    }
  }

  /// The address it listens on, once bound (port 0 in `address` becomes the port chosen).
  public func listeningAddress(timeout: Duration = .seconds(30)) async throws -> HostPort {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if let address = bound.withLock({ $0 }) { return address }
      try await Task.sleep(for: .milliseconds(20))
    }
    throw RPCFailure.internal("the metrics endpoint did not bind within \(timeout)")
  }

  private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
    try? await connection.executeThenClose { inbound, outbound in
      var head: HTTPRequestHead?
      for try await part in inbound {
        switch part {
        case .head(let request): head = request
        case .body: break
        case .end:
          guard let request = head else { continue }
          let found = request.method == .GET && request.uri.split(separator: "?").first == "/metrics"
          let body = found ? metrics.text() : "not found\n"
          var headers = HTTPHeaders()
          headers.add(name: "content-type", value: found ? "text/plain; version=0.0.4" : "text/plain")
          headers.add(name: "content-length", value: String(body.utf8.count))
          try await outbound.write(
            .head(HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers)))
          try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
          try await outbound.write(.end(nil))
          if !request.isKeepAlive { return }
        }
      }
    }
  }
}
