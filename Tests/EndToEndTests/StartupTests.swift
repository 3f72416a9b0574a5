import Foundation
import RapportCore
import RapportLocal
import RapportTesting
import Testing

extension Executables {
  @Suite struct StartupTests {
    /// `rapport up`'s fixed ports can be held for a while by another program's closing connection: the
    /// service is started again until its port is free instead of the suite giving up. Either listener's
    /// port: the gRPC one, or `/metrics`.
    @Test(arguments: ["grpc", "metrics"])
    func aServiceWhosePortIsBusyAtStartStartsOnceThePortIsFree(_ listener: String) async throws {
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
        "customer", port: listener == "grpc" ? holder.port : 0, database: database, upstream: [], dataDirectory: directory,
        settings: listener == "metrics" ? ["metrics-addr": "127.0.0.1:\(holder.port)"] : [:])
      try await released.value
      if listener == "grpc" {
        #expect(address.port == holder.port)
      } else {
        #expect(try await process.metricsAddress().port == holder.port)
      }
      let log = try String(contentsOfFile: process.logPath, encoding: .utf8)
      #expect(log.contains("Address already in use"), "the first attempt found the port busy")
      await process.stop()
    }
  }
}
