import RapportProtos
import Foundation
import RapportCore
import RapportLocal
import Testing

/// The generated code in Shared/RapportProtos was produced from the protos in Protos/ as they are now
/// (Protos/generate.sh records their checksum; CI also regenerates and diffs).
@Test(.hangLimit) func generatedCodeMatchesTheProtos() async throws {
  let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  let recorded = try String(contentsOf: root.appendingPathComponent("Shared/RapportProtos/protos.sha256"), encoding: .utf8)
    .trimmingCharacters(in: .whitespacesAndNewlines)
  let current = try await Shell.run(
    "/bin/sh",
    ["-c", "cd '\(root.path)/Protos' && cat $(find . -name '*.proto' | sed 's|^\\./||' | LC_ALL=C sort) | sha256sum | cut -d' ' -f1"]
  ).trimmingCharacters(in: .whitespacesAndNewlines)
  #expect(current == recorded, "Protos/ changed since the code was generated: run Protos/generate.sh")
}

/// docs/PARTNERS.md shows the Python partner example exactly as the end-to-end test runs it.
@Test(.hangLimit) func thePartnerGuideShowsThePythonExampleTheInteropTestRuns() throws {
  let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  let example = try String(contentsOf: root.appendingPathComponent("Tests/EndToEndTests/interop/partner_example.py"), encoding: .utf8)
  let guide = try String(contentsOf: root.appendingPathComponent("docs/PARTNERS.md"), encoding: .utf8)
  #expect(guide.contains("```python\n" + example + "```"), "docs/PARTNERS.md must show partner_example.py unchanged")
}

@Suite(.hangLimit) struct EventTypeNameTests {
  @Test func theStoredTypeIsThePayloadMessageName() {
    let payloads: [(Rapport_Events_V1_Event.OneOf_Payload, String)] = [
      (.customerCreated(.init()), "CustomerCreated"), (.customerMerged(.init()), "CustomerMerged"),
      (.orderPlaced(.init()), "OrderPlaced"), (.cartAbandoned(.init()), "CartAbandoned"),
      (.ticketStatusChanged(.init()), "TicketStatusChanged"), (.slaBreached(.init()), "SlaBreached"),
      (.ticketPriorityChanged(.init()), "TicketPriorityChanged"),
    ]
    for (payload, name) in payloads { #expect(payload.typeName == name) }
    #expect(Rapport_Events_V1_CompanyContactUnlinked.eventType == "CompanyContactUnlinked")
  }
}
