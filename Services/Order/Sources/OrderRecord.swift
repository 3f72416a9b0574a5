import Foundation
import PostgresNIO
import RapportCore
import RapportProtos
import SwiftProtobuf

/// An order as stored. `history`, `payments` and `refunds` are loaded only for single-order reads.
struct OrderRecord: Sendable {
  var id: UUID
  var customerID: UUID
  var channel: Int
  var idempotencyKey: String
  var status: Rapport_Order_V1_OrderStatus
  var currency: String
  var createdAt: Date
  var updatedAt: Date
  var lines: [Rapport_Order_V1_OrderLine] = []
  var amounts = OrderAmounts()
  var channelOrderReference = ""
  var shippingAddress: Rapport_Order_V1_PostalAddress?
  var billingAddress: Rapport_Order_V1_PostalAddress?
  var terms: Terms?
  var paidMinor: Int64 = 0
  var refundedMinor: Int64 = 0
  var carrier: String?
  var trackingNumber: String?
  var shippedAt: Date?
  var deliveredAt: Date?
  var cartID: String?
  var history: [Rapport_Order_V1_StatusChange] = []
  var payments: [Rapport_Order_V1_Payment] = []
  var refunds: [Rapport_Order_V1_Refund] = []

  /// B2B terms with the net days resolved.
  struct Terms: Sendable {
    var companyID: UUID
    var purchaseOrderNumber: String
    var netDays: Int
    var dueAt: Date
  }

  var totalMinor: Int64 { amounts.total }
  var outstandingMinor: Int64 { amounts.total - paidMinor }
  var aggregateID: String { id.uuidString.lowercased() }
  var customer: String { customerID.uuidString.lowercased() }

  func money(_ minor: Int64) -> Rapport_Common_V1_Money {
    .with {
      $0.amountMinor = minor
      $0.currency = currency
    }
  }

  var proto: Rapport_Order_V1_Order {
    .with {
      $0.id = aggregateID
      $0.customerID = customer
      $0.channel = Rapport_Common_V1_Channel(rawValue: channel) ?? .unspecified
      $0.idempotencyKey = idempotencyKey
      $0.status = status
      $0.lines = lines
      $0.total = money(amounts.total)
      $0.subtotal = money(amounts.subtotal)
      $0.discountTotal = money(amounts.discount)
      $0.taxTotal = money(amounts.tax)
      $0.shipping = money(amounts.shipping)
      $0.createTime = .init(microsecondsOf: createdAt)
      $0.updateTime = .init(microsecondsOf: updatedAt)
      $0.channelOrderReference = channelOrderReference
      if let shippingAddress { $0.shippingAddress = shippingAddress }
      if let billingAddress { $0.billingAddress = billingAddress }
      if let terms {
        $0.b2B = .with {
          $0.companyID = terms.companyID.uuidString.lowercased()
          $0.purchaseOrderNumber = terms.purchaseOrderNumber
          $0.paymentTermsNetDays = Int32(terms.netDays)
        }
        $0.paymentDueTime = .init(microsecondsOf: terms.dueAt)
      }
      $0.amountPaid = money(paidMinor)
      $0.amountRefunded = money(refundedMinor)
      if let carrier, let trackingNumber, let shippedAt {
        $0.shipment = .with {
          $0.carrier = carrier
          $0.trackingNumber = trackingNumber
          $0.shipTime = .init(microsecondsOf: shippedAt)
        }
      }
      if let deliveredAt { $0.deliverTime = .init(microsecondsOf: deliveredAt) }
      $0.cartID = cartID ?? ""
      $0.history = history
      $0.payments = payments
      $0.refunds = refunds
    }
  }

  /// The columns `init(row:)` reads, in its order (it reads by position).
  static let columns = """
    id, customer_id, channel, idempotency_key, status, currency, created_at, updated_at, subtotal_minor,
    discount_minor, tax_minor, shipping_minor, total_minor, channel_order_reference,
    shipping_address::text, billing_address::text, company_id, purchase_order_number, payment_terms_net_days,
    payment_due_at, paid_minor, refunded_minor, carrier, tracking_number, shipped_at, delivered_at, cart_id
    """

  init(
    id: UUID, customerID: UUID, channel: Int, idempotencyKey: String, status: Rapport_Order_V1_OrderStatus,
    currency: String, createdAt: Date
  ) {
    self.id = id
    self.customerID = customerID
    self.channel = channel
    self.idempotencyKey = idempotencyKey
    self.status = status
    self.currency = currency
    self.createdAt = createdAt
    self.updatedAt = createdAt
  }

  /// `columns` and then the order's lines as parallel arrays, from `orders.orders` joined with `withLines`.
  static let columnsWithLines = columns + ", l.skus, l.titles, l.quantities, l.prices, l.discounts, l.taxes"
  static let withLines = """
    CROSS JOIN LATERAL (
      SELECT array_agg(sku ORDER BY line_no) AS skus, array_agg(title ORDER BY line_no) AS titles,
        array_agg(quantity ORDER BY line_no) AS quantities, array_agg(unit_price_minor ORDER BY line_no) AS prices,
        array_agg(discount_minor ORDER BY line_no) AS discounts, array_agg(tax_minor ORDER BY line_no) AS taxes
      FROM orders.order_lines WHERE order_id = orders.id) l
    """

  /// Decodes a row selected with `columns`.
  init(row: PostgresRow) throws {
    var r = RowReader(row)
    try self.init(reader: &r)
  }

  /// Decodes a row selected with `columnsWithLines`.
  init(rowWithLines row: PostgresRow) throws {
    var r = RowReader(row)
    try self.init(readerWithLines: &r)
  }

  /// Decodes `columnsWithLines` from where `r` stands.
  init(readerWithLines r: inout RowReader) throws {
    try self.init(reader: &r)
    let skus = try r.next([String]?.self) ?? [], titles = try r.next([String]?.self) ?? []
    let quantities = try r.next([Int64]?.self) ?? [], prices = try r.next([Int64]?.self) ?? []
    let discounts = try r.next([Int64]?.self) ?? [], taxes = try r.next([Int64]?.self) ?? []
    guard [titles.count, quantities.count, prices.count, discounts.count, taxes.count].allSatisfy({ $0 == skus.count })
    else { throw RPCFailure.internal("an order's line arrays differ in length") }
    lines = skus.indices.map { n in
      .line(sku: skus[n], title: titles[n], quantity: quantities[n], price: prices[n], discount: discounts[n],
            tax: taxes[n], currency: currency)
    }
  }

  private init(reader r: inout RowReader) throws {
    self.init(
      id: try r.next(), customerID: try r.next(), channel: try r.next(), idempotencyKey: try r.next(),
      status: Rapport_Order_V1_OrderStatus(rawValue: try r.next(Int.self)) ?? .unspecified,
      currency: try r.next(), createdAt: try r.next())
    updatedAt = try r.next()
    amounts = OrderAmounts(subtotal: try r.next(), discount: try r.next(), tax: try r.next(), shipping: try r.next())
    let stored = try r.next(Int64.self)
    channelOrderReference = try r.next()
    shippingAddress = try Self.address(r.next(String?.self))
    billingAddress = try Self.address(r.next(String?.self))
    let company = try r.next(UUID?.self)
    let purchaseOrder = try r.next(String?.self)
    let netDays = try r.next(Int?.self)
    let dueAt = try r.next(Date?.self)
    if let company, let due = dueAt {
      terms = Terms(companyID: company, purchaseOrderNumber: purchaseOrder ?? "", netDays: netDays ?? 0, dueAt: due)
    }
    paidMinor = try r.next()
    refundedMinor = try r.next()
    carrier = try r.next()
    trackingNumber = try r.next()
    shippedAt = try r.next()
    deliveredAt = try r.next()
    cartID = try r.next()
    if stored != amounts.total { throw RPCFailure.internal("stored order total disagrees with its parts") }
  }

  private static func address(_ json: String?) throws -> Rapport_Order_V1_PostalAddress? {
    guard let json else { return nil }
    return try Rapport_Order_V1_PostalAddress(jsonString: json)
  }
}

/// An order's money, all in its currency's minor unit; `total` is derived.
struct OrderAmounts: Sendable, Equatable {
  var subtotal: Int64 = 0
  var discount: Int64 = 0
  var tax: Int64 = 0
  var shipping: Int64 = 0
  var total: Int64 { subtotal - discount + tax + shipping }
}

extension Rapport_Order_V1_PostalAddress {
  /// The snapshot as stored (jsonb).
  var stored: String? { try? jsonString() }
}
