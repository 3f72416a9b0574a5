import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// `GET /metrics` in Prometheus text format on its own address (`--metrics-addr`), a plain HTTP/1.1
/// listener beside the gRPC one. Anything else is 404; it ends on graceful shutdown.
public final class MetricsEndpoint: Service {
  let address: HostPort
  let metrics: RPCMetrics
  let logger: Logger

  public init(address: HostPort, metrics: RPCMetrics, logger: Logger) {
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
    logger.info("metrics listening", metadata: ["address": "\(server.channel.localAddress.map { "\($0)" } ?? "?")"])
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
