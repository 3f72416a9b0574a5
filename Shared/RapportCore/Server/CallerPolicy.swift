import GRPCCore
import GRPCNIOTransportHTTP2
import RapportProtos
import X509

/// Which peers may call which RPCs of an internal service, by the common name of the client certificate
/// they presented in the mutual-TLS handshake (`customer`, `order`, `support`, `analytics`, `gateway`,
/// `operator`). The handshake already refused peers without a certificate from the suite's CA; this
/// refuses a valid peer that has no business with the method: PERMISSION_DENIED, before the handler runs.
/// Health checks are open to every peer that completed the handshake.
public struct CallerPolicy: ServerInterceptor {
  /// Allowed callers by fully qualified method (`rapport.customer.v1.CustomerService/EraseCustomer`) or
  /// service (`rapport.customer.v1.CustomerService`); a method's own entry wins over its service's.
  public let rules: [String: Set<String>]

  public init(_ rules: [String: Set<String>]) { self.rules = rules }

  /// The callers allowed to call `method`; empty when nobody is.
  public func allowed(_ method: MethodDescriptor) -> Set<String> {
    rules[method.fullyQualifiedMethod] ?? rules[method.service.fullyQualifiedService] ?? []
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>, context: ServerContext,
    next: (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard context.descriptor.service != Grpc_Health_V1_Health.descriptor else { return try await next(request, context) }
    guard let caller = Self.caller(context), allowed(context.descriptor).contains(caller) else {
      throw RPCError(code: .permissionDenied, message: "this caller may not call \(context.descriptor.method)")
    }
    return try await next(request, context)
  }

  /// The common name of the peer's certificate, when it presented one.
  public static func caller(_ context: ServerContext) -> String? {
    guard let posix = context.transportSpecific as? HTTP2ServerTransport.Posix.Context,
      let certificate = posix.peerCertificate
    else { return nil }
    for name in certificate.subject {
      for attribute in name where attribute.type == .RDNAttributeType.commonName { return "\(attribute.value)" }
    }
    return nil
  }
}

extension CallerPolicy {
  /// The suite's callers, by the name on their certificate.
  public enum Caller {
    public static let customer = "customer", order = "order", support = "support", analytics = "analytics"
    public static let gateway = "gateway"
    /// The `rapport` CLI and operators' tools (imports, erasure, merges, exports, benchmarks).
    public static let `operator` = "operator"
  }

  public static let eventFeed = "rapport.events.v1.EventFeed"
}
