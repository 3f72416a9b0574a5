import Foundation
import RapportCore
import RapportProtos

/// A validated `PlaceOrderRequest`: amounts computed, strings trimmed, limits checked.
struct OrderDraft: Sendable {
  enum Customer: Sendable {
    case id(UUID)
    case identities([Rapport_Customer_V1_Identity])
  }

  var customer: Customer
  var channel: Rapport_Common_V1_Channel
  var key: String
  var currency: String
  var lines: [Rapport_Order_V1_OrderLine]
  var amounts: OrderAmounts
  var channelOrderReference: String
  var shippingAddress: Rapport_Order_V1_PostalAddress?
  var billingAddress: Rapport_Order_V1_PostalAddress?
  var company: (id: UUID, purchaseOrderNumber: String, netDays: Int?)?
  var cartID: String?
}

/// Validation of order and cart input; each failure is INVALID_ARGUMENT naming the field.
enum OrderInput {
  /// Lines one order or cart may have.
  static let maxLines = 100
  /// Largest quantity of one line.
  static let maxQuantity: Int64 = 100_000
  /// Largest unit price, tax or shipping amount, in minor units (10^12: far above any real price, far
  /// below overflow).
  static let maxAmount: Int64 = 1_000_000_000_000
  /// Identities one request may carry.
  static let maxIdentities = 10

  static func draft(_ request: Rapport_Order_V1_PlaceOrderRequest) throws -> OrderDraft {
    let key = try Validate.required(request.idempotencyKey, field: "idempotency_key", max: 128)
    let customer = try self.customer(request.customerID, request.customerIdentities)
    let channel = try Validate.specified(request.channel, field: "channel")
    let currency = try Validate.currency(request.currency)
    guard !request.lines.isEmpty else { throw RPCFailure.invalid("lines", "at least one line is required") }
    let (lines, lineAmounts) = try self.lines(request.lines, currency: currency)
    var amounts = lineAmounts
    amounts.shipping = try amount(request.shippingMinor, field: "shipping_minor")
    guard amounts.total <= Int64.max / 2 else { throw RPCFailure.invalid("lines", "order total is too large") }
    if request.hasExpectedTotal {
      guard request.expectedTotal.currency == currency else {
        throw RPCFailure.invalid("expected_total.currency", "must equal the order currency \(currency)")
      }
      guard request.expectedTotal.amountMinor == amounts.total else {
        throw RPCFailure.invalid(
          "expected_total", "is \(request.expectedTotal.amountMinor) but the lines, tax and shipping add up to \(amounts.total)")
      }
    }
    var company: (UUID, String, Int?)?
    if request.hasB2B {
      let id = try Validate.uuid(request.b2B.companyID, field: "b2b.company_id")
      let po = try Validate.optional(request.b2B.purchaseOrderNumber, field: "b2b.purchase_order_number", max: 64)
      var days: Int?
      if request.b2B.hasPaymentTermsNetDays {
        guard (0...365).contains(request.b2B.paymentTermsNetDays) else {
          throw RPCFailure.invalid("b2b.payment_terms_net_days", "must be between 0 and 365")
        }
        days = Int(request.b2B.paymentTermsNetDays)
      }
      company = (id, po, days)
    }
    let cart = try Validate.optional(request.cartID, field: "cart_id", max: 128)
    return OrderDraft(
      customer: customer, channel: channel, key: key, currency: currency, lines: lines, amounts: amounts,
      channelOrderReference: try Validate.optional(
        request.channelOrderReference, field: "channel_order_reference", max: 64),
      shippingAddress: request.hasShippingAddress
        ? try address(request.shippingAddress, field: "shipping_address") : nil,
      billingAddress: request.hasBillingAddress ? try address(request.billingAddress, field: "billing_address") : nil,
      company: company, cartID: cart.isEmpty ? nil : cart)
  }

  /// A customer id, or else 1…10 identities for the customer service to resolve.
  static func customer(_ id: String, _ identities: [Rapport_Customer_V1_Identity]) throws -> OrderDraft.Customer {
    if !id.isEmpty {
      guard identities.isEmpty else {
        throw RPCFailure.invalid("customer_identities", "give customer_id or customer_identities, not both")
      }
      return .id(try Validate.uuid(id, field: "customer_id"))
    }
    guard !identities.isEmpty else { throw RPCFailure.invalid("customer_id", "customer_id or customer_identities is required") }
    guard identities.count <= maxIdentities else {
      throw RPCFailure.invalid("customer_identities", "at most \(maxIdentities) identities")
    }
    for (index, identity) in identities.enumerated() {
      _ = try Validate.specified(identity.kind, field: "customer_identities[\(index)].kind")
      _ = try Validate.required(identity.value, field: "customer_identities[\(index)].value", max: 254)
    }
    return .identities(identities)
  }

  /// Validates lines and computes each line's total and the sums. Quantity 1…100000, unit price and tax
  /// 0…10^12, discount at most the line's gross, currency empty or the order's.
  static func lines(
    _ input: [Rapport_Order_V1_OrderLine], currency: String, field: String = "lines"
  ) throws -> ([Rapport_Order_V1_OrderLine], OrderAmounts) {
    guard input.count <= maxLines else { throw RPCFailure.invalid(field, "at most \(maxLines) lines") }
    var amounts = OrderAmounts()
    var lines: [Rapport_Order_V1_OrderLine] = []
    for (index, line) in input.enumerated() {
      let f = "\(field)[\(index)]"
      var clean = Rapport_Order_V1_OrderLine()
      clean.sku = try Validate.required(line.sku, field: "\(f).sku", max: 64)
      clean.title = try Validate.optional(line.title, field: "\(f).title", max: 200)
      guard (1...maxQuantity).contains(line.quantity) else {
        throw RPCFailure.invalid("\(f).quantity", "must be between 1 and \(maxQuantity)")
      }
      clean.quantity = line.quantity
      clean.unitPriceMinor = try amount(line.unitPriceMinor, field: "\(f).unit_price_minor")
      clean.taxMinor = try amount(line.taxMinor, field: "\(f).tax_minor")
      let gross = line.quantity * line.unitPriceMinor  // ≤ 10^5 × 10^12: no overflow
      guard (0...gross).contains(line.discountMinor) else {
        throw RPCFailure.invalid("\(f).discount_minor", "must be between 0 and the line's quantity × unit price")
      }
      clean.discountMinor = line.discountMinor
      guard line.currency.isEmpty || line.currency == currency else {
        throw RPCFailure.invalid("\(f).currency", "must equal the order currency \(currency); mixed currencies are refused")
      }
      clean.currency = currency
      clean.totalMinor = gross - line.discountMinor + line.taxMinor
      amounts.subtotal += gross  // ≤ 100 × 10^17 would overflow: checked against the cap below
      amounts.discount += clean.discountMinor
      amounts.tax += clean.taxMinor
      guard amounts.subtotal <= Int64.max / 4 else { throw RPCFailure.invalid(field, "order total is too large") }
      lines.append(clean)
    }
    return (lines, amounts)
  }

  /// An amount 0…10^12.
  static func amount(_ value: Int64, field: String) throws -> Int64 {
    guard (0...maxAmount).contains(value) else { throw RPCFailure.invalid(field, "must be between 0 and \(maxAmount)") }
    return value
  }

  /// A positive amount of money in `currency`.
  static func money(_ value: Rapport_Common_V1_Money, currency: String, field: String) throws -> Int64 {
    guard value.currency == currency else {
      throw RPCFailure.invalid("\(field).currency", "must equal the order currency \(currency)")
    }
    guard (1...maxAmount).contains(value.amountMinor) else {
      throw RPCFailure.invalid("\(field).amount_minor", "must be between 1 and \(maxAmount)")
    }
    return value.amountMinor
  }

  static func address(_ input: Rapport_Order_V1_PostalAddress, field: String) throws -> Rapport_Order_V1_PostalAddress {
    var clean = Rapport_Order_V1_PostalAddress()
    clean.name = try Validate.optional(input.name, field: "\(field).name", max: 200)
    clean.company = try Validate.optional(input.company, field: "\(field).company", max: 200)
    clean.line1 = try Validate.required(input.line1, field: "\(field).line1", max: 200)
    clean.line2 = try Validate.optional(input.line2, field: "\(field).line2", max: 200)
    clean.city = try Validate.optional(input.city, field: "\(field).city", max: 100)
    clean.region = try Validate.optional(input.region, field: "\(field).region", max: 100)
    clean.postalCode = try Validate.optional(input.postalCode, field: "\(field).postal_code", max: 32)
    clean.phone = try Validate.optional(input.phone, field: "\(field).phone", max: 32)
    clean.country = try Validate.country(input.country, field: "\(field).country")
    return clean
  }

  /// Who made a change: at most 128 characters; empty means "api".
  static func actor(_ value: String) throws -> String {
    let actor = try Validate.optional(value, field: "actor", max: 128)
    return actor.isEmpty ? "api" : actor
  }
}
