import GRPCCore

/// Keeps response times from telling a bound key whether a row it may not see exists. A row of another
/// company costs the gateway more than a missing one (the owning service finds it, then the customer
/// check runs on a real customer): `rapport bench-partners` measured +0.7 ms for GetCustomer and +4.8 ms
/// for GetOrder over 1,000 interleaved probes, which a prober can tell apart. So for bound keys every
/// NOT_FOUND, and every empty page answered for a customer or company outside the binding, is held until
/// `floor` after the call began: both kinds then answer at the floor, unless the work itself took longer.
/// Unbound keys and anonymous calls are not held (they see every row their scopes allow).
struct HiddenRowFloor: ServerInterceptor {
  let floor: Duration

  /// When the current bound-key call may answer "nothing there"; nil outside such a call.
  @TaskLocal static var earliestAnswer: ContinuousClock.Instant?

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>, context: ServerContext,
    next: (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard let key = CallerKey.current, !key.companyIDs.isEmpty, floor > .zero else { return try await next(request, context) }
    return try await Self.$earliestAnswer.withValue(.now + floor) {
      do {
        let response = try await next(request, context)
        if case .failure(let error) = response.accepted, error.code == .notFound { await Self.hold() }
        return response
      } catch let error as RPCError where error.code == .notFound {
        await Self.hold()
        throw error
      }
    }
  }

  /// Waits until the current bound-key call may answer "nothing there" (at once for other calls, and
  /// when the call is cancelled: its caller has gone).
  static func hold() async {
    guard let earliestAnswer else { return }
    try? await Task.sleep(until: earliestAnswer)
  }
}
