import Foundation
import RapportLocal
import RapportTesting
import Testing

@Suite(.hangLimit) struct ChildProcessTests {
  /// Foundation's Process learns that a child exited when a socket the child inherited closes. A process
  /// the child leaves behind keeps a copy of it (as does any program another thread spawns while the
  /// child starts), so Foundation went on reporting the child as running, and `stop()` waited until the
  /// copy closed: for ever, had the holder been a daemon. The kernel's answer counts.
  @Test func aChildThatLeavesAProcessBehindStopsAtOnce() async throws {
    let directory = NSTemporaryDirectory() + "rapport-child-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    // Runs until SIGTERM (as a service does), leaving `sleep 60` behind with a copy of the socket.
    let child = try ChildProcess(
      name: "leaver", executable: try Shell.which("sh"),
      arguments: [
        "-c", "sleep 60 & echo \"left $!\"; echo 'leaver listening on 127.0.0.1:9'; trap 'exit 0' TERM; while :; do sleep 0.05; done",
      ],
      environment: [:], logPath: "\(directory)/leaver.log")
    _ = try await child.address()
    let log = try String(contentsOfFile: child.logPath, encoding: .utf8)
    let left = try #require(log.firstMatch(of: /left (\d+)/).flatMap { Int32($0.1) })
    defer { kill(left, SIGKILL) }
    #expect(child.isRunning)
    let stopping = ContinuousClock.now
    await child.stop()
    // Foundation alone said "running" until `sleep 60` ended: stop() took the 10 s grace, then ~50 s more.
    #expect(ContinuousClock.now - stopping < .seconds(5))
    #expect(!child.isRunning)
    #expect(kill(left, 0) == 0, "the process left behind still runs (and holds Foundation's socket)")
  }

  /// A program `Shell` runs keeps only its standard descriptors: one this process opened without
  /// close-on-exec (as Foundation opens the socket above) is not passed on.
  @Test func aProgramShellRunsInheritsNoOtherDescriptor() throws {
    let descriptor = open("/dev/null", O_RDONLY)
    try #require(descriptor > 2)
    defer { close(descriptor) }
    let seen = try Shell.outcome(
      try Shell.which("sh"), ["-c", "if [ -e /proc/self/fd/\(descriptor) ]; then echo inherited; else echo closed; fi"])
    #expect(seen.status == 0 && seen.output == "closed\n", "\(seen)")
  }
}
