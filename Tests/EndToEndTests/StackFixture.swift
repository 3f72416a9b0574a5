import Foundation
import RapportCore
import RapportLocal
import RapportTesting
import Testing

/// Every suite that starts the real executables runs inside this one, one test at a time: each stack is
/// five processes, and on a shared 2-core machine several at once beside the in-process tests starved
/// upstream calls past their deadlines.
@Suite(.serialized, .hangLimit) enum Executables {}

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

/// The repository's root (the tests run from a checkout).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()

/// Runs the Python script `Tests/EndToEndTests/interop/<script>` with the Protos folder as its first
/// argument, then `arguments`; returns the JSON object it prints on its last line.
func runInterop(_ script: String, _ arguments: [String]) async throws -> [String: Any] {
  let output = try await Shell.run(
    try Shell.which("python3"),
    [repositoryRoot.appendingPathComponent("Tests/EndToEndTests/interop/\(script)").path,
     repositoryRoot.appendingPathComponent("Protos").path] + arguments)
  let line = output.split(separator: "\n").last.map(String.init) ?? ""
  guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
    throw TestFailure("\(script) printed no JSON: \(output)")
  }
  return object
}
