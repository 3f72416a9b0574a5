import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import SwiftProtobuf

/// Consent and the interaction timeline.
extension CustomerRPCs {
  /// How far in the future a client's clock may be for decision and interaction times.
  static let clockSkew: TimeInterval = 300

  func setConsent(
    request: Rapport_Customer_V1_SetConsentRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_SetConsentResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let input = request.decision
    var decision = Rapport_Customer_V1_ConsentDecision()
    decision.purpose = try Validate.specified(input.purpose, field: "decision.purpose")
    decision.channel = try Validate.known(input.channel, field: "decision.channel")
    decision.granted = input.granted
    decision.source = try Validate.required(input.source, field: "decision.source", max: 128)
    decision.decideTime = .init(
      microsecondsOf: try Self.pastOrNow(input.decideTime, isSet: input.hasDecideTime, field: "decision.decide_time"))
    let current = try await store.setConsent(decision, for: id)
    return .with { $0.current = current }
  }

  func getConsent(
    request: Rapport_Customer_V1_GetConsentRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_GetConsentResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    guard try await store.load(id) != nil else { throw RPCFailure.notFound("customer", request.customerID) }
    let (current, history) = try await store.consent(of: id)
    return .with {
      $0.current = current
      $0.history = history
    }
  }

  func recordInteraction(
    request: Rapport_Customer_V1_RecordInteractionRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_RecordInteractionResponse {
    let input = request.interaction
    var interaction = Rapport_Customer_V1_Interaction()
    interaction.customerID = try Validate.uuid(input.customerID, field: "interaction.customer_id").lowercased
    interaction.channel = try Validate.specified(input.channel, field: "interaction.channel")
    interaction.kind = try Validate.specified(input.kind, field: "interaction.kind")
    interaction.summary = try Validate.required(input.summary, field: "interaction.summary", max: 2000)
    interaction.externalReference = try Validate.optional(
      input.externalReference, field: "interaction.external_reference", max: 128)
    interaction.occurTime = .init(
      microsecondsOf: try Self.pastOrNow(input.occurTime, isSet: input.hasOccurTime, field: "interaction.occur_time"))
    let stored = try await store.record(interaction)
    return .with { $0.interaction = stored }
  }

  func listInteractions(
    request: Rapport_Customer_V1_ListInteractionsRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_ListInteractionsResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let limit = try Validate.pageSize(request.pageSize)
    let token = try PageToken.decode(request.pageToken)
    guard try await store.load(id) != nil else { throw RPCFailure.notFound("customer", request.customerID) }
    let rows = try await store.interactions(of: id, after: token, limit: limit + 1)
    let page = PageToken.page(rows, limit: limit) { PageToken($0.occurTime, $0.id) }
    return .with {
      $0.interactions = page.rows
      $0.nextPageToken = page.nextPageToken
    }
  }

  /// A client-supplied time that may not lie more than `clockSkew` ahead; unset means now.
  static func pastOrNow(_ time: Google_Protobuf_Timestamp, isSet: Bool, field: String) throws -> Date {
    guard let date = try Validate.time(time, isSet: isSet, field: field) else { return Date.databaseNow }
    guard date.timeIntervalSinceNow <= clockSkew else { throw RPCFailure.invalid(field, "lies in the future") }
    return date
  }
}
