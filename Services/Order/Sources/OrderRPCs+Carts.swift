import Foundation
import GRPCCore
import RapportCore
import RapportProtos

extension OrderRPCs {
  func upsertCart(
    request: Rapport_Order_V1_UpsertCartRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_UpsertCartResponse {
    let cartID = try Validate.required(request.cartID, field: "cart_id", max: 128)
    let channel = try Validate.specified(request.channel, field: "channel")
    let currency = try Validate.currency(request.currency)
    let anonymous = try Validate.optional(request.anonymousID, field: "anonymous_id", max: 128)
    let (lines, amounts) = try OrderInput.lines(request.lines, currency: currency)
    var customerID: UUID?
    if !request.customerID.isEmpty || !request.customerIdentities.isEmpty {
      switch try OrderInput.customer(request.customerID, request.customerIdentities) {
      case .id(let id):
        customerID = try await activeCustomer(id)
      case .identities(let identities):
        let id = try await customers.resolve(identities, channel: channel, name: nil)
        try await store.remember(id, as: .active, at: clock.now)
        customerID = id
      }
    }
    let now = clock.now
    var cart = CartRecord(
      channel: channel.rawValue, cartID: cartID, customerID: customerID, anonymousID: anonymous.isEmpty ? nil : anonymous,
      currency: currency, totalMinor: amounts.subtotal - amounts.discount + amounts.tax, createdAt: now, updatedAt: now,
      abandonedAt: nil, orderID: nil)
    cart.lines = lines
    let stored = try await store.upsertCart(cart)
    return .with { $0.cart = stored.proto }
  }

  func getCart(
    request: Rapport_Order_V1_GetCartRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_GetCartResponse {
    let channel = try Validate.specified(request.channel, field: "channel")
    let cartID = try Validate.required(request.cartID, field: "cart_id", max: 128)
    guard let cart = try await store.cart(channel: channel.rawValue, id: cartID) else {
      throw RPCFailure.notFound("cart", cartID)
    }
    return .with { $0.cart = cart.proto }
  }
}
