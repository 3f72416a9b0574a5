import Foundation
import RapportCore
import RapportLocal
import RapportTesting
import Testing

extension Executables {
  @Suite struct StartupTests {
    /// `rapport up`'s fixed ports can be held for a while by another program's closing connection: the
    /// service is started again until its port is free instead of the suite giving up.
    @Test func aServiceWhosePortIsBusyAtStartStartsOnceThePortIsFree() async throws {
      let database = try await TestDatabase.create()
      let directory = NSTemporaryDirectory() + "rapport-busy-\(UUID().uuidString)"
      defer { try? FileManager.default.removeItem(atPath: directory) }
      // Bound without SO_REUSEADDR, as an outgoing connection's local port is: the service cannot bind it.
      let holder = try SilentListener(listening: false)
      let released = Task {
        try await Task.sleep(for: .seconds(3))
        holder.stop()
      }
      let (process, address) = try await Stack.launch(
        "customer", port: holder.port, database: database, upstream: [], dataDirectory: directory)
      defer { Task { await process.stop() } }
      try await released.value
      #expect(address.port == holder.port)
      let log = try String(contentsOfFile: process.logPath, encoding: .utf8)
      #expect(log.contains("Address already in use"), "the first attempt found the port busy")
      await process.stop()
    }
  }
}
