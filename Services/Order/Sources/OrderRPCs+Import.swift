import Foundation
import GRPCCore
import GRPCProtobuf
import RapportCore
import RapportProtos
import Synchronization

/// `ImportOrders`: past orders with their original times and final status (issue 14; docs/ANALYTICS.md).
extension OrderRPCs {
  static let importErrorLimit = 1_000
  /// Rows read before they are imported together: rows of different customers run concurrently, one
  /// customer's rows one after another in stream order.
  static let importBatchSize = 64

  func importOrders(
    request: RPCAsyncSequence<Rapport_Order_V1_ImportOrdersRequest, any Error>, context: ServerContext
  ) async throws -> Rapport_Order_V1_ImportOrdersResponse {
    var response = Rapport_Order_V1_ImportOrdersResponse()
    let resolved = ResolvedCustomers()
    var batch: [(Int64, Rapport_Order_V1_ImportOrdersRequest)] = []
    for try await row in request {
      response.rows += 1
      batch.append((row.rowNumber > 0 ? row.rowNumber : response.rows, row))
      if batch.count == Self.importBatchSize {
        try await importBatch(batch, into: &response, resolved)
        batch.removeAll(keepingCapacity: true)
      }
    }
    try await importBatch(batch, into: &response, resolved)
    return response
  }

  private enum RowOutcome: Sendable {
    case created, existing
    case failed(field: String, message: String)
  }

  /// Imports `batch`: one task per customer (rows keyed by their customer reference), each running its
  /// rows in order. A row that fails for its own content is counted; UNAVAILABLE ends the stream.
  private func importBatch(
    _ batch: [(Int64, Rapport_Order_V1_ImportOrdersRequest)], into response: inout Rapport_Order_V1_ImportOrdersResponse,
    _ resolved: ResolvedCustomers
  ) async throws {
    var groups: [String: [(Int64, Rapport_Order_V1_ImportOrdersRequest)]] = [:]
    for entry in batch { groups[Self.customerKey(entry.1.order), default: []].append(entry) }
    let outcomes = try await withThrowingTaskGroup(of: [(Int64, RowOutcome)].self) { group in
      for rows in groups.values {
        group.addTask {
          var outcomes: [(Int64, RowOutcome)] = []
          for (number, row) in rows { outcomes.append((number, try await importOutcome(row, resolved))) }
          return outcomes
        }
      }
      return try await group.reduce(into: []) { $0 += $1 }.sorted { $0.0 < $1.0 }
    }
    for (number, outcome) in outcomes {
      switch outcome {
      case .created: response.created += 1
      case .existing: response.existing += 1
      case .failed(let field, let message):
        response.failed += 1
        record(&response, number, field: field, message)
      }
    }
  }

  private func importOutcome(_ row: Rapport_Order_V1_ImportOrdersRequest, _ resolved: ResolvedCustomers) async throws -> RowOutcome {
    do {
      return try await importOrder(row, resolved) ? .created : .existing
    } catch let error as GoogleRPCStatus {
      return .failed(field: String(error.message.prefix { $0 != ":" }), message: error.message)
    } catch let error as RPCError where [.notFound, .failedPrecondition, .invalidArgument].contains(error.code) {
      // The row's customer or company is unknown or erased, or its reference was imported with other
      // content: that row fails; anything else (UNAVAILABLE) ends the stream, to be retried whole.
      return .failed(field: "", message: error.message)
    }
  }

  /// Rows with the same key name the same customer the same way (and so go one after another).
  static func customerKey(_ order: Rapport_Order_V1_PlaceOrderRequest) -> String {
    order.customerID.isEmpty
      ? order.customerIdentities.map { "\($0.kind.rawValue):\($0.value.lowercased())" }.joined(separator: "|")
      : order.customerID
  }

  private func record(_ response: inout Rapport_Order_V1_ImportOrdersResponse, _ number: Int64, field: String, _ message: String) {
    guard response.errors.count < Self.importErrorLimit else { return }
    response.errors.append(.with {
      $0.rowNumber = number
      $0.field = field
      $0.message = message
    })
  }

  /// Imports one order; false when it was imported before (same channel, reference and content).
  func importOrder(_ row: Rapport_Order_V1_ImportOrdersRequest, _ resolved: ResolvedCustomers = .init()) async throws -> Bool {
    guard row.hasOrder else { throw RPCFailure.invalid("order", "is required") }
    var request = row.order
    guard request.idempotencyKey.isEmpty else {
      throw RPCFailure.invalid("order.idempotency_key", "must be empty: imports are idempotent by channel_order_reference")
    }
    guard request.cartID.isEmpty else { throw RPCFailure.invalid("order.cart_id", "must be empty in an import") }
    let reference = try Validate.required(
      request.channelOrderReference, field: "order.channel_order_reference", max: 64)
    request.idempotencyKey = "import:" + reference
    let draft: OrderDraft
    do {
      draft = try OrderInput.draft(request)
    } catch let error as GoogleRPCStatus {
      throw RPCFailure.invalid("order." + String(error.message.prefix { $0 != ":" }), String(error.message.drop { $0 != ":" }.dropFirst(2)))
    }
    guard let placed = try Validate.time(row.placedTime, isSet: row.hasPlacedTime, field: "placed_time") else {
      throw RPCFailure.invalid("placed_time", "is required")
    }
    guard placed <= clock.now.addingTimeInterval(60) else { throw RPCFailure.invalid("placed_time", "is in the future") }
    let status = try Validate.known(row.status, field: "status")
    let bytes: [UInt8] = try row.serializedBytes()
    switch try await store.existing(channel: draft.channel.rawValue, key: draft.key, requestBytes: bytes) {
    case .replayed?: return false
    case .keyConflict?:
      throw RPCFailure.invalid("order.channel_order_reference", "was already imported on this channel with other content")
    default: break
    }
    let (customerID, terms) = try await customerAndTerms(draft, at: placed, resolved: resolved)
    let order = OrderRecord(draft, customerID: customerID, terms: terms, now: placed)
    let placement = try await place(order, draft: draft, requestBytes: bytes) { placed in
      let (reached, steps) = try Self.steps(placed, to: status)
      let events = steps.map { Outbox.event(aggregateType: "order", aggregateID: reached.aggregateID, occurredAt: reached.createdAt, $0) }
      return (reached, placementEvents(placed) + events)
    }
    switch placement {
    case .created: return true
    case .replayed: return false
    default:
      throw RPCFailure.invalid("order.channel_order_reference", "was already imported on this channel with other content")
    }
  }

  /// The placed order after the lifecycle steps that lead to `status`, all at its placed time, and the
  /// events of those steps (placing's own come from `placementEvents`). One history entry says it was
  /// imported in that status.
  static func steps(_ placed: OrderRecord, to status: Rapport_Order_V1_OrderStatus) throws
    -> (OrderRecord, [Rapport_Events_V1_Event.OneOf_Payload])
  {
    var order = placed
    let at = placed.createdAt
    var payloads: [Rapport_Events_V1_Event.OneOf_Payload] = []
    if [.paid, .fulfilled, .delivered, .refunded].contains(status), order.outstandingMinor > 0 {
      let payment = Rapport_Order_V1_Payment.with {
        $0.id = "import"
        $0.provider = "import"
        $0.providerReference = placed.channelOrderReference
      }
      payloads += try OrderLifecycle.pay(&order, payment, amount: order.outstandingMinor, paidAt: at).events
    }
    if status == .fulfilled || status == .delivered {
      payloads += try OrderLifecycle.fulfill(&order, carrier: "", tracking: "", now: at).events
    }
    if status == .delivered { payloads += try OrderLifecycle.deliver(&order, now: at).events }
    if status == .cancelled { payloads += try OrderLifecycle.cancel(&order, reason: "imported", now: at).events }
    if status == .refunded, order.paidMinor > 0 {
      let refund = Rapport_Order_V1_Refund.with {
        $0.id = "import"
        $0.reason = "imported"
      }
      payloads += try OrderLifecycle.refund(&order, refund, amount: order.paidMinor, now: at).events
    }
    order.history[0].to = order.status
    order.history[0].actor = "import"
    order.history[0].reason = "imported"
    return (order, payloads)
  }
}

/// Customers an import stream has resolved, by identities, channel and name: a customer's later rows
/// skip the customer service (a merge or erasure meanwhile is caught when the order is stored, by
/// `customer_refs`).
final class ResolvedCustomers: Sendable {
  private let ids = Mutex<[String: UUID]>([:])

  func id(for key: String) -> UUID? { ids.withLock { $0[key] } }
  func remember(_ id: UUID, for key: String) { ids.withLock { $0[key] = id } }
}
