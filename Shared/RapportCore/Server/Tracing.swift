import GRPCCore
import Instrumentation
import RapportProtos
import ServiceContextModule
import Synchronization
import Tracing

/// Distributed tracing, off unless the process was started with an OTLP endpoint (`ServiceMain`
/// bootstraps swift-otel then and sets `RapportTracing.enabled`). When off, no interceptor is installed
/// and no span is made: the request path costs nothing.
///
/// What is traced: every RPC a service serves (a server span, parented by the caller's W3C
/// `traceparent` metadata), every call it makes while serving (a client span whose context travels in
/// the request's metadata), and every event from the outbox to each consumer: an event carries the
/// `traceparent` of the request that produced it, and a consumer applies it inside a consumer span of
/// that trace.
public enum RapportTracing {
  private static let state = Atomic<Bool>(false)

  /// Whether this process exports spans.
  public static var enabled: Bool { state.load(ordering: .relaxed) }

  /// Called once the tracer is bootstrapped.
  public static func enable() { state.store(true, ordering: .relaxed) }

  /// The server-side interceptor, when tracing is on.
  public static var serverInterceptors: [any ServerInterceptor] { enabled ? [TracingServerInterceptor()] : [] }

  /// The client-side interceptor, when tracing is on.
  public static var clientInterceptors: [any ClientInterceptor] { enabled ? [TracingClientInterceptor()] : [] }

  /// The W3C `traceparent` of the current span, for an event written now ("" when none).
  public static func currentTraceParent() -> String {
    guard enabled, let context = ServiceContext.current else { return "" }
    var carrier: [String: String] = [:]
    InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryCarrier())
    return carrier["traceparent"] ?? ""
  }

  /// Runs `body` (applying a batch of events in one transaction) with, for each traced event, a
  /// consumer span in the trace that produced it; the spans end when the batch is applied.
  public static func applying(
    _ batch: [Rapport_Events_V1_Event], from source: String, _ body: () async throws -> Void
  ) async throws {
    guard enabled else { return try await body() }
    let spans = batch.filter { !$0.traceparent.isEmpty }.map { event -> any Span in
      var context = ServiceContext.topLevel
      InstrumentationSystem.instrument.extract(["traceparent": event.traceparent], into: &context, using: DictionaryCarrier())
      let span = InstrumentationSystem.tracer.startSpan("apply \(event.type)", context: context, ofKind: .consumer)
      span.attributes["messaging.system"] = "rapport"
      span.attributes["messaging.source.name"] = source
      span.attributes["messaging.message.id"] = event.id
      span.attributes["messaging.batch.message_count"] = batch.count
      return span
    }
    do {
      try await body()
      for span in spans { span.end() }
    } catch {
      for span in spans {
        span.recordError(error)
        span.setStatus(SpanStatus(code: .error))
        span.end()
      }
      throw error
    }
  }
}

/// `traceparent`/`tracestate` in and out of gRPC metadata.
struct MetadataCarrier: Injector, Extractor {
  func inject(_ value: String, forKey key: String, into carrier: inout Metadata) {
    carrier.replaceOrAddString(value, forKey: key)
  }
  func extract(key: String, from carrier: Metadata) -> String? {
    carrier[stringValues: key].first(where: { _ in true })
  }
}

/// `traceparent` in and out of a plain dictionary (an event's stored context).
struct DictionaryCarrier: Injector, Extractor {
  func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
  func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

/// A server span per RPC, parented by the caller's `traceparent`; the handler and its response stream
/// run inside it, so calls made while serving join the trace.
struct TracingServerInterceptor: ServerInterceptor {
  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>, context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var parent = ServiceContext.topLevel
    InstrumentationSystem.instrument.extract(request.metadata, into: &parent, using: MetadataCarrier())
    let span = InstrumentationSystem.tracer.startSpan(
      context.descriptor.fullyQualifiedMethod, context: parent, ofKind: .server)
    span.attributes["rpc.system"] = "grpc"
    span.attributes["rpc.service"] = context.descriptor.service.fullyQualifiedService
    span.attributes["rpc.method"] = context.descriptor.method
    do {
      var response = try await ServiceContext.withValue(span.context) { try await next(request, context) }
      switch response.accepted {
      case .success(var contents):
        let producer = contents.producer
        let spanContext = span.context
        contents.producer = { writer in
          do {
            let trailers = try await ServiceContext.withValue(spanContext) { try await producer(writer) }
            span.attributes["rpc.grpc.status_code"] = 0
            span.end()
            return trailers
          } catch {
            Self.end(span, with: error)
            throw error
          }
        }
        response.accepted = .success(contents)
      case .failure(let error):
        Self.end(span, with: error)
      }
      return response
    } catch {
      Self.end(span, with: error)
      throw error
    }
  }

  private static func end(_ span: any Span, with error: any Error) {
    let code = (error as? RPCError)?.code.rawValue ?? RPCError.Code.unknown.rawValue
    span.attributes["rpc.grpc.status_code"] = code
    span.setStatus(SpanStatus(code: .error))
    span.end()
  }
}

/// A client span per call made inside a traced request; its context goes out as `traceparent`.
/// Calls made outside any request (feed subscriptions, background loops) are not traced.
struct TracingClientInterceptor: ClientInterceptor {
  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>, context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    guard let parent = ServiceContext.current else { return try await next(request, context) }
    return try await withSpan(context.descriptor.fullyQualifiedMethod, context: parent, ofKind: .client) { span in
      span.attributes["rpc.system"] = "grpc"
      span.attributes["rpc.service"] = context.descriptor.service.fullyQualifiedService
      span.attributes["rpc.method"] = context.descriptor.method
      var request = request
      InstrumentationSystem.instrument.inject(span.context, into: &request.metadata, using: MetadataCarrier())
      let response = try await next(request, context)
      if case .failure(let error) = response.accepted {
        span.attributes["rpc.grpc.status_code"] = error.code.rawValue
        span.setStatus(SpanStatus(code: .error))
      }
      return response
    }
  }
}
