import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

@Suite(.hangLimit) struct CustomerTimelineTests {
  @Test func consentKeepsHistoryAndTheNewestDecisionPerPurposeAndChannelIsCurrent() async throws {
    try await withCustomerService { customers, database, _ in
      let ada = try await customers.createCustomer(.with { $0.email = "ada@example.com" }).customer
      let now = Date()
      let decisions: [(Rapport_Customer_V1_ConsentPurpose, Rapport_Common_V1_Channel, Bool, TimeInterval)] = [
        (.marketingEmail, .unspecified, true, -300),
        (.marketingSms, .mobile, true, -200),
        (.marketingEmail, .unspecified, false, -100),
        // Recorded late but decided earliest: history only.
        (.marketingEmail, .unspecified, true, -1000),
      ]
      for (purpose, channel, granted, offset) in decisions {
        _ = try await customers.setConsent(.with {
          $0.customerID = ada.id
          $0.decision = .with {
            $0.purpose = purpose
            $0.channel = channel
            $0.granted = granted
            $0.source = "web-form"
            $0.decideTime = Google_Protobuf_Timestamp(date: now.addingTimeInterval(offset))
          }
        })
      }
      let consent = try await customers.getConsent(.with { $0.customerID = ada.id })
      #expect(consent.current.map(\.purpose) == [.marketingEmail, .marketingSms])
      #expect(consent.current.map(\.granted) == [false, true])
      #expect(consent.history.count == 4)
      #expect(consent.history.map(\.decideTime.seconds) == consent.history.map(\.decideTime.seconds).sorted(by: >))
      let events = try await count("customer.outbox WHERE type = 'ConsentChanged'", database)
      #expect(events == 4)
    }
  }

  @Test func invalidConsentNamesTheFieldAndStoresNothing() async throws {
    try await withCustomerService { customers, database, _ in
      let ada = try await customers.createCustomer(.with { $0.email = "ada@example.com" }).customer
      let valid = Rapport_Customer_V1_SetConsentRequest.with {
        $0.customerID = ada.id
        $0.decision = .with {
          $0.purpose = .profiling
          $0.source = "app"
        }
      }
      let cases: [(String, Rapport_Customer_V1_SetConsentRequest)] = [
        ("decision.purpose", valid.changed { $0.decision.purpose = .unspecified }),
        ("decision.purpose", valid.changed { $0.decision.purpose = .UNRECOGNIZED(12) }),
        ("decision.source", valid.changed { $0.decision.source = "" }),
        ("decision.source", valid.changed { $0.decision.source = String(repeating: "s", count: 129) }),
        ("decision.channel", valid.changed { $0.decision.channel = .UNRECOGNIZED(99) }),
        ("decision.decide_time", valid.changed { $0.decision.decideTime = Google_Protobuf_Timestamp(date: Date() + 3600) }),
        ("customer_id", valid.changed { $0.customerID = "x" }),
      ]
      for (field, request) in cases {
        await expectStatus(.invalidArgument, field: field) { try await customers.setConsent(request) }
      }
      await expectStatus(.notFound) { try await customers.setConsent(valid.changed { $0.customerID = UUID().uuidString }) }
      let stored = try await count("customer.consent_history", database)
      #expect(stored == 0)
    }
  }

  @Test func interactionsAreIdempotentByReferenceAndPageNewestFirst() async throws {
    try await withCustomerService { customers, database, _ in
      let ada = try await customers.createCustomer(.with { $0.email = "ada@example.com" }).customer
      let base = Date().addingTimeInterval(-10_000)
      for index in 0..<25 {
        _ = try await customers.recordInteraction(.with {
          $0.interaction = .with {
            $0.customerID = ada.id
            $0.channel = .email
            $0.kind = .campaignTouch
            $0.summary = "campaign \(index)"
            $0.occurTime = Google_Protobuf_Timestamp(date: base.addingTimeInterval(Double(index)))
            $0.externalReference = "msg-\(index)"
          }
        })
      }
      let replay = try await customers.recordInteraction(.with {
        $0.interaction = .with {
          $0.customerID = ada.id
          $0.channel = .email
          $0.kind = .campaignTouch
          $0.summary = "campaign 3 again"
          $0.externalReference = "msg-3"
        }
      }).interaction
      #expect(replay.summary == "campaign 3")
      var summaries: [String] = []
      var token = ""
      repeat {
        let page = try await customers.listInteractions(.with {
          $0.customerID = ada.id
          $0.pageSize = 10
          $0.pageToken = token
        })
        summaries += page.interactions.map(\.summary)
        token = page.nextPageToken
        if summaries.count == 10 {
          // A touchpoint recorded while paging (newer than everything) does not shift later pages.
          _ = try await customers.recordInteraction(.with {
            $0.interaction = .with {
              $0.customerID = ada.id
              $0.channel = .chat
              $0.kind = .chat
              $0.summary = "live chat"
            }
          })
        }
      } while !token.isEmpty
      #expect(summaries == (0..<25).reversed().map { "campaign \($0)" })
      let stored = try await count("customer.interactions", database)
      #expect(stored == 26)
      for (field, interaction) in [
        ("interaction.kind", Rapport_Customer_V1_Interaction.with { $0.customerID = ada.id; $0.channel = .web; $0.summary = "x" }),
        ("interaction.channel", .with { $0.customerID = ada.id; $0.kind = .note; $0.summary = "x" }),
        ("interaction.summary", .with { $0.customerID = ada.id; $0.channel = .web; $0.kind = .note }),
        ("interaction.summary", .with {
          $0.customerID = ada.id; $0.channel = .web; $0.kind = .note; $0.summary = String(repeating: "x", count: 2001)
        }),
      ] {
        await expectStatus(.invalidArgument, field: field) {
          try await customers.recordInteraction(.with { $0.interaction = interaction })
        }
      }
      await expectStatus(.invalidArgument, field: "page_token") {
        try await customers.listInteractions(.with {
          $0.customerID = ada.id
          $0.pageToken = "garbage"
        })
      }
    }
  }
}
