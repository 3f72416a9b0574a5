import RapportCore
import Foundation

/// Runs local tools (initdb, pg_ctl, child services) for `rapport up` and the test harness.
public enum Shell {
  /// Runs a program to completion; throws with its output when it fails.
  @discardableResult
  public static func run(_ program: String, _ arguments: [String], asUser user: String? = nil) throws -> String {
    let result = try outcome(program, arguments, asUser: user)
    guard result.status == 0 else {
      throw ShellError(description: "\(([program] + arguments).joined(separator: " ")) failed (status \(result.status)): \(result.output)")
    }
    return result.output
  }

  /// Runs a program to completion and returns its exit status (128 + the signal's number when a signal
  /// ended it) and its output (stdout and stderr). With `timeout`, a program still running then is
  /// sent SIGKILL.
  ///
  /// Uses posix_spawn and waitpid rather than Foundation's Process: Process notices a child's exit
  /// through a socket the child inherits, so a daemon it leaves behind (pg_ctl starting postgres), or
  /// any program another thread spawns meanwhile, would make it wait for ever. Output goes to a file
  /// for the same reason.
  public static func outcome(
    _ program: String, _ arguments: [String], asUser user: String? = nil, timeout: Duration? = nil
  ) throws -> (status: Int32, output: String) {
    var command = [program] + arguments
    if let user, getuid() == 0 { command = [try which("runuser"), "-u", user, "--"] + command }
    let outputPath = NSTemporaryDirectory() + "rapport-shell-\(UUID().uuidString).log"
    defer { try? FileManager.default.removeItem(atPath: outputPath) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    closeInheritedDescriptors(&actions)
    // Spawned from a Dispatch worker thread, the child would inherit a mask blocking every signal
    // (pgbench's -T timer is SIGALRM): start it with no signal blocked and default handlers.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t()
    sigemptyset(&none)
    var all = sigset_t()
    sigfillset(&all)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv = command.map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, command[0], &actions, &attributes, argv, environ)
    guard spawned == 0 else { throw ShellError(description: "could not start \(command[0]): errno \(spawned)") }
    var status: Int32 = 0
    if let timeout {
      let deadline = ContinuousClock.now + timeout
      var killed = false
      while true {
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid || (reaped < 0 && errno != EINTR) { break }
        if !killed && ContinuousClock.now >= deadline {
          kill(pid, SIGKILL)
          killed = true
        }
        usleep(10_000)
      }
    } else {
      while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
    let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    let signal = status & 0x7f
    return (signal == 0 ? (status >> 8) & 0xff : 128 + signal, text)
  }

  /// The child keeps only its standard descriptors: one that a long-lived program (pg_ctl's postgres)
  /// inherited from another thread's work in progress, such as the socket by which Foundation's Process
  /// learns that its child exited, would stay open as long as that program runs. glibc (2.34 and later)
  /// closes them in the child with `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc
  /// module does not declare: it is looked up by name, and where it is missing nothing changes.
  private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = addCloseFrom else { return }
    _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, 3)
  }

  /// (A constant, looked up once.)
  nonisolated(unsafe) private static let addCloseFrom: UnsafeMutableRawPointer? = dlsym(
    UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")

  /// `run` on a thread of its own, for async callers: waiting for a child must not hold one of the few
  /// threads every Swift task runs on (two on a 2-core machine). Tests that waited there froze the
  /// in-process services of the tests running beside them ("service did not start listening").
  @discardableResult
  public static func run(_ program: String, _ arguments: [String], asUser user: String? = nil) async throws -> String {
    try await onOwnThread { try run(program, arguments, asUser: user) }
  }

  /// Runs blocking `work` on a new thread and waits for it without holding a Swift concurrency thread.
  public static func onOwnThread<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
      Thread { continuation.resume(with: Swift.Result { try work() }) }.start()
    }
  }

  /// The full path of a program on PATH.
  public static func which(_ name: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for directory in path.split(separator: ":") {
      let candidate = "\(directory)/\(name)"
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw ShellError(description: "\(name) not found on PATH")
  }

  /// A TCP port on 127.0.0.1 that was free a moment ago.
  public static func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ShellError(description: "socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
        bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
      }
    }
    guard bound else { throw ShellError(description: "bind() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
  }
}

/// A local tool failed; the message includes its output.
public struct ShellError: Error, CustomStringConvertible {
  public let description: String
  public init(description: String) { self.description = description }
}
