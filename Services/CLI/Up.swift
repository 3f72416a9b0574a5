import ArgumentParser
import Foundation
import Logging
import RapportCore
import RapportLocal
import UnixSignals

/// `rapport up`: the whole suite on this machine.
struct Up: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Start an embedded PostgreSQL and the five services; Ctrl-C stops them all.")

  @Option(help: "Project data folder (database cluster, logs).")
  var dataDir = ".rapport"

  @Option(help: "Use this PostgreSQL (a superuser URL) instead of the embedded one.")
  var databaseURL: String?

  @Flag(help: "Load a small demo data set (customers, orders, tickets). Runs in development mode (see --plaintext) unless --tls is given.")
  var demo = false

  @Flag(help: "TLS everywhere: a CA and certificates in <data-dir>/tls, mutual TLS between the services with per-caller allow-lists, TLS on the gateway, and partner calls need an API key. The default, except with --demo. The CLI then needs --tls-dir <data-dir>/tls (or RAPPORT_TLS_DIR).")
  var tls = false

  @Flag(help: "Development mode: plaintext everywhere, every caller trusted, and the gateway serves partner calls without a key (what --demo implies). Not for real data.")
  var plaintext = false

  /// TLS and partner keys, unless development mode was asked for (`--plaintext`, or `--demo` without `--tls`).
  var secure: Bool { tls || !(demo || plaintext) }

  func validate() throws {
    if tls && plaintext { throw ValidationError("--tls and --plaintext exclude each other") }
  }

  func run() async throws {
    var logger = Logger(label: "rapport")
    logger.logLevel = .warning
    let directory = URL(fileURLWithPath: dataDir).standardizedFileURL.path
    say("Rapport: starting")
    var settings = Stack.defaultMetricsPorts.mapValues { ["metrics-addr": "127.0.0.1:\($0)"] }
    let keyFile = "\(directory)/first-admin.key"
    settings["gateway", default: [:]]["admin-key-file"] = keyFile
    let stack = try await Stack.start(
      dataDirectory: directory, databaseURL: try databaseURL.map(DatabaseURL.init(parsing:)),
      ports: Stack.defaultPorts, settings: settings, tls: secure, logger: logger, say: say)
    await Self.announceFirstAdminKey(keyFile)
    say("metrics: GET http://127.0.0.1:<port>/metrics, ports \(Stack.order.map { "\($0) \(Stack.defaultMetricsPorts[$0]!)" }.joined(separator: ", "))")
    if demo {
      do {
        let emails = try await Demo.load(stack)
        say("demo data loaded; try: .build/debug/rapport view \(emails[0])")
      } catch {
        // Nothing may outlive a failed start: stop the services and the database, then report.
        await stack.stop()
        throw error
      }
    }
    say("Rapport is up: gateway at \(stack.address("gateway"))\(secure ? " (TLS, partner keys required)" : ""). Ctrl-C stops everything.")
    if let tlsDirectory = stack.tlsDirectory {
      say("  CLI: export RAPPORT_TLS_DIR=\(tlsDirectory); rapport view also needs a key with views:read in RAPPORT_API_KEY")
    } else {
      say("  development mode: plaintext, every caller trusted, partner calls without keys; not for real data")
    }
    let reason = await waitForStop(stack)
    say("stopping (\(reason))")
    await stack.stop()
    say("stopped")
  }

  /// Prints the admin key the gateway created on its first start (it writes it to `file` once, when no
  /// admin key exists) and deletes the file: the key is shown here once and kept nowhere in clear.
  static func announceFirstAdminKey(_ file: String) async {
    for _ in 0..<20 {
      if let key = try? String(contentsOfFile: file, encoding: .utf8) {
        try? FileManager.default.removeItem(atPath: file)
        say("first admin key (shown once, not stored; keep it safe): \(key.trimmingCharacters(in: .whitespacesAndNewlines))")
        say("  e.g. RAPPORT_ADMIN_KEY=<key> rapport partners create --name Acme")
        return
      }
      try? await Task.sleep(for: .milliseconds(100))
    }
  }

  /// Waits for SIGINT/SIGTERM, supervising meanwhile: a service that exits on its own is reported and
  /// restarted on its address after a backoff (1 s, doubling to 30 s; back to 1 s once it has run a minute).
  private func waitForStop(_ stack: Stack) async -> String {
    await withTaskGroup(of: String.self) { group in
      group.addTask {
        for await signal in await UnixSignalsSequence(trapping: .sigint, .sigterm) { return "\(signal)" }
        return "signal"
      }
      group.addTask {
        await stack.supervise(say: say)
        return "cancelled"
      }
      let first = await group.next() ?? "stop"
      group.cancelAll()
      return first
    }
  }
}

/// Prints a line unbuffered, so a log file shows progress as it happens.
func say(_ line: String) {
  FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
