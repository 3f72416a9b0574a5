import Foundation
import Synchronization
import GRPCCore
import Logging
import RapportProtos

/// The request id of the RPC being served, for log lines and outbound calls.
public enum RequestID {
  @TaskLocal public static var current: String?

  /// The metadata key a caller may set and every response carries.
  public static let metadataKey = "x-request-id"

  /// A caller's id if it is 1–128 printable ASCII characters, else a new one.
  static func accept(_ value: String?) -> String {
    if let value, (1...128).contains(value.utf8.count), value.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) {
      return value
    }
    return next()
  }

  /// A new id: a UUID (version 8) of a random per-process prefix and a counter, so making one costs no
  /// system call (`UUID()` reads the kernel's random source each time: 2–3 % of a Health/Check's CPU).
  static func next() -> String {
    let (prefix, n) = (processPrefix, counter.add(1, ordering: .relaxed).newValue)
    let p = prefix.bigEndian, c = n.bigEndian
    var bytes = withUnsafeBytes(of: p) { Array($0) } + withUnsafeBytes(of: c) { Array($0) }
    bytes[6] = (bytes[6] & 0x0f) | 0x80  // version 8: custom
    bytes[8] = (bytes[8] & 0x3f) | 0x80  // RFC 9562 variant
    let uuid = UUID(uuid: (
      bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
      bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    return uuid.uuidString.lowercased()
  }

  private static let processPrefix = UInt64.random(in: .min ... .max)
  private static let counter = Atomic<UInt64>(0)
}

extension Logger.MetadataProvider {
  /// Adds `request-id` to every log line written while an RPC is served.
  public static let requestID = Logger.MetadataProvider {
    RequestID.current.map { ["request-id": .string($0)] } ?? [:]
  }
}

/// The one place every RPC of every service passes through (installed by `ServiceApp`):
/// - request id: the caller's `x-request-id` or a new one, echoed in trailing metadata and present in
///   every log line of the call (`RequestID.current`, `Logger.MetadataProvider.requestID`);
/// - error mapping: whatever a handler or its response stream throws becomes the status a client may
///   see (`RPCFailure.map`: database failures UNAVAILABLE, unexpected errors INTERNAL, no internals);
/// - metrics: calls by method and code, latency and in-flight calls (`RPCMetrics`);
/// - fail fast: while the database refuses the probe's connections (`health.databaseRefused`), every RPC
///   but `grpc.health.v1.Health` is UNAVAILABLE at once instead of waiting in postgres-nio's pool for a
///   connection that will not come (its circuit breaker trips only after 60 s).
public struct ServingInterceptor: ServerInterceptor {
  let logger: Logger
  let metrics: RPCMetrics
  let health: HealthState?

  public init(logger: Logger, metrics: RPCMetrics, health: HealthState? = nil) {
    self.logger = logger
    self.metrics = metrics
    self.health = health
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>, context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let id = RequestID.accept(request.metadata[stringValues: RequestID.metadataKey].first(where: { _ in true }))
    let call = metrics.begin(context.descriptor.fullyQualifiedMethod)
    let logger = self.logger
    let health = self.health
    return try await RequestID.$current.withValue(id) {
      var response: StreamingServerResponse<Output>
      do {
        if let health, health.databaseRefused, context.descriptor.service != Grpc_Health_V1_Health.descriptor {
          throw RPCFailure.unavailable("database unavailable, retry later")
        }
        response = try await next(request, context)
      } catch {
        throw Self.finish(call, error: error, id: id, logger: logger)
      }
      switch response.accepted {
      case .success(var contents):
        let producer = contents.producer
        contents.producer = { writer in
          try await RequestID.$current.withValue(id) {
            do {
              var trailers = try await producer(writer)
              trailers.replaceOrAddString(id, forKey: RequestID.metadataKey)
              call.end(.ok)
              return trailers
            } catch {
              throw Self.finish(call, error: error, id: id, logger: logger)
            }
          }
        }
        response.accepted = .success(contents)
      case .failure(let error):
        response.accepted = .failure(Self.finish(call, error: error, id: id, logger: logger))
      }
      return response
    }
  }

  /// Maps `error` to what the client sees, tags it with the request id and counts it.
  private static func finish(_ call: RPCMetrics.Call, error: any Error, id: String, logger: Logger) -> RPCError {
    var rpcError: RPCError
    switch RPCFailure.map(error, logger: logger) {
    case let mapped as RPCError: rpcError = mapped
    case let mapped as any RPCErrorConvertible: rpcError = RPCError(mapped)
    default: rpcError = RPCError(code: .internalError, message: "internal error")
    }
    rpcError.metadata.replaceOrAddString(id, forKey: RequestID.metadataKey)
    call.end(Status.Code(rpcError.code))
    return rpcError
  }
}
