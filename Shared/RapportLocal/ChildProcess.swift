import RapportCore
import Foundation
import Synchronization

/// A service executable started as a child process. Its output goes to a log file; start-up waits for
/// its "listening on host:port" line, so port 0 (any free port) works.
public final class ChildProcess: Sendable {
  public let name: String
  public let logPath: String
  private let process: Mutex<Process?>
  private let scanner = AnnouncementScanner()
  /// Where this process's output begins in the log (a restarted service appends to its predecessor's).
  private let logStart: Int

  /// Starts `executable` and waits (up to `timeout`) until it announces its address; returns it.
  public init(
    name: String, executable: String, arguments: [String] = [], environment: [String: String],
    logPath: String
  ) throws {
    self.name = name
    self.logPath = logPath
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    // A restarted service appends to the log of the process it replaces.
    if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    logStart = Int(try log.seekToEnd())
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = log
    process.standardInput = FileHandle.nullDevice
    self.process = Mutex(process)
    try process.run()
    Self.copy(pipe.fileHandleForReading, to: log, scanning: scanner)
  }

  /// Copies the child's output into its log until the child closes it, on a thread of its own with
  /// blocking reads. Not Foundation's `readabilityHandler`: its libdispatch source on the pipe crashed
  /// the test process once in CI (SIGSEGV in `_dispatch_event_loop_drain` on libdispatch's manager
  /// thread while another child was being spawned; the same crash as swiftlang/swift-subprocess#47).
  private static func copy(_ output: FileHandle, to log: FileHandle, scanning scanner: AnnouncementScanner) {
    Thread {
      var buffer = [UInt8](repeating: 0, count: 1 << 16)
      while true {
        let count = buffer.withUnsafeMutableBytes { read(output.fileDescriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        let data = Data(buffer[..<count])
        log.write(data)
        scanner.consume(data)
      }
      try? output.close()
    }.start()
  }

  /// Waits until the process printed its address, or fails when it exits first or time runs out.
  public func address(timeout: Duration = .seconds(60)) async throws -> HostPort {
    try await announced("start", timeout: timeout) { $0.address }
  }

  /// Where the process serves `GET /metrics`, once it has announced it (so `metrics-addr` may use port 0).
  public func metricsAddress(timeout: Duration = .seconds(60)) async throws -> HostPort {
    try await announced("serve metrics", timeout: timeout) { $0.metricsAddress }
  }

  private func announced(
    _ what: String, timeout: Duration, _ read: (AnnouncementScanner) -> String?
  ) async throws -> HostPort {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if let text = read(scanner) { return try HostPort(parsing: text) }
      if !isRunning {
        throw ShellError(description: "\(name) exited (\(exitStatus ?? -1)); see \(logPath):\n\(logTail())")
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    throw ShellError(description: "\(name) did not \(what) within \(timeout); see \(logPath)")
  }

  /// Foundation's Process learns of an exit when a socket the child inherited closes: a process that
  /// got a copy of it (any child spawned by another thread at that moment) delays that until it exits
  /// itself. A child the kernel holds as a zombie has exited, whatever Foundation says.
  public var isRunning: Bool {
    guard process.withLock({ $0?.isRunning ?? false }) else { return false }
    return !Self.exited(pid)
  }

  /// Whether the kernel has process `pid` as exited and not yet reaped (state Z or X in /proc/pid/stat).
  /// False where /proc is not there (macOS): Foundation's answer stands.
  public static func exited(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let end = stat.lastIndex(of: ")")
    else { return false }
    let state = stat[stat.index(after: end)...].drop { $0 == " " }.first
    return state == "Z" || state == "X"
  }
  public var exitStatus: Int32? { process.withLock { $0.flatMap { $0.isRunning ? nil : $0.terminationStatus } } }
  public var pid: Int32 { process.withLock { $0?.processIdentifier ?? 0 } }

  /// Sends SIGTERM and waits up to `grace` for the process to drain; then SIGKILL.
  public func stop(grace: Duration = .seconds(10)) async {
    signal(SIGTERM)
    let deadline = ContinuousClock.now + grace
    while isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    if isRunning { signal(SIGKILL) }
    while isRunning { try? await Task.sleep(for: .milliseconds(20)) }
  }

  /// Sends a signal (SIGKILL for crash tests).
  public func signal(_ number: Int32) {
    let pid = self.pid
    if pid > 0 && isRunning { kill(pid, number) }
  }

  /// The last lines of the log, for error messages.
  public func logTail(lines: Int = 20) -> String {
    let data = (try? Data(contentsOf: URL(fileURLWithPath: logPath))) ?? Data()
    let text = String(decoding: data.dropFirst(logStart), as: UTF8.self)
    return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
  }
}

/// Scans a child's output for its "… listening on host:port" line (the gRPC listener) and its
/// "… metrics on host:port" line (`GET /metrics`, when the service serves it).
final class AnnouncementScanner: Sendable {
  private let state = Mutex<(buffer: Data, address: String?, metricsAddress: String?)>((Data(), nil, nil))

  var address: String? { state.withLock { $0.address } }
  var metricsAddress: String? { state.withLock { $0.metricsAddress } }

  func consume(_ data: Data) {
    state.withLock { state in
      state.buffer.append(data)
      while let newline = state.buffer.firstIndex(of: 0x0A) {
        let line = String(decoding: state.buffer[state.buffer.startIndex..<newline], as: UTF8.self)
        state.buffer.removeSubrange(state.buffer.startIndex...newline)
        if let range = line.range(of: " listening on ") { state.address = String(line[range.upperBound...]) }
        if let range = line.range(of: " metrics on ") { state.metricsAddress = String(line[range.upperBound...]) }
      }
    }
  }
}
