import Foundation
import RapportLocal
import RapportTesting
import Testing

@Suite struct ChildProcessTests {
  /// Foundation's Process learns that a child exited when a socket the child inherited closes. A process
  /// the child leaves behind keeps a copy of it (as does any program another thread spawns while the
  /// child starts), so Foundation went on reporting the child as running; a suite that stopped such a
  /// service waited for ever (CI at f7938b1 was killed after 15 minutes). The kernel's answer counts.
  @Test func aChildThatLeavesAProcessBehindIsSeenToExitAndStops() async throws {
    let directory = NSTemporaryDirectory() + "rapport-child-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let child = try ChildProcess(
      name: "leaver", executable: try Shell.which("sh"),
      arguments: ["-c", "sleep 60 & echo \"left $!\"; echo 'leaver listening on 127.0.0.1:9'"],
      environment: [:], logPath: "\(directory)/leaver.log")
    _ = try await child.address()
    let log = try String(contentsOfFile: child.logPath, encoding: .utf8)
    let left = try #require(log.firstMatch(of: /left (\d+)/).flatMap { Int32($0.1) })
    defer { kill(left, SIGKILL) }
    try await eventually(within: .seconds(10), "the child is seen to have exited") { !child.isRunning }
    #expect(kill(left, 0) == 0, "the process left behind still runs (and holds Foundation's socket)")
    let stopping = ContinuousClock.now
    await child.stop()
    #expect(ContinuousClock.now - stopping < .seconds(5))
  }
}
