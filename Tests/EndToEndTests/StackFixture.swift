import Foundation
import RapportCore
import RapportLocal
import RapportTesting
import Testing

/// Every suite that starts the real executables runs inside this one, one test at a time: each stack is
/// five processes, and on a shared 2-core machine several at once beside the in-process tests starved
/// upstream calls past their deadlines.
@Suite(.serialized) enum Executables {}

/// Starts the five executables on a fresh database for `body` and stops them afterwards; prints their
/// logs when it fails.
func withStack(
  _ label: String = "e2e", settings: [String: [String: String]] = [:], tls: Bool = false,
  _ body: (Stack) async throws -> Void
) async throws {
  let database = try await TestDatabase.create()
  let directory = NSTemporaryDirectory() + "rapport-\(label)-\(UUID().uuidString)"
  let stack = try await Stack.start(
    dataDirectory: directory, databaseURL: database, ports: [:], settings: settings, tls: tls, logger: testLogger(label))
  do {
    try await body(stack)
    await stack.stop()
    try? FileManager.default.removeItem(atPath: directory)
  } catch {
    await stack.stop()
    for entry in stack.processes { print("--- \(entry.name) log:\n\(entry.process.logTail())") }
    throw error
  }
}
