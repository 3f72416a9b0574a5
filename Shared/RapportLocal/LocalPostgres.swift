import RapportCore
import Foundation
import Logging
import PostgresNIO

/// A PostgreSQL cluster in a folder of ours, run with the distribution's `initdb` and `pg_ctl` (as the
/// `postgres` user when we are root, since initdb refuses root). Used by `rapport up` and the tests.
public struct LocalPostgres: Sendable {
  public let directory: String
  public let port: Int
  /// The superuser's URL (trust authentication on 127.0.0.1 only).
  public var adminURL: DatabaseURL {
    DatabaseURL(host: "127.0.0.1", port: port, user: "postgres", database: "postgres")
  }

  /// The OS user that owns and runs the cluster when we are root.
  static let runAs = "postgres"

  /// Initialises (if new) and starts the cluster in `directory`; reuses it when it is already running.
  /// - Parameter ephemeral: trade durability for speed (fsync off), for throwaway test clusters.
  /// When we are root and the `postgres` user cannot reach `directory` (a checkout under /root, say), the
  /// cluster lives in /var/tmp/rapport/<hash of directory> instead; `directory` in the result says where.
  public static func start(directory requested: String, ephemeral: Bool = false, maxConnections: Int = 200) throws -> LocalPostgres {
    let initdb = try binary("initdb")
    let pgctl = try binary("pg_ctl")
    let user: String? = getuid() == 0 ? runAs : nil
    let files = FileManager.default
    let parent = URL(fileURLWithPath: requested).deletingLastPathComponent().path
    try files.createDirectory(atPath: parent, withIntermediateDirectories: true)
    var directory = requested
    if let user, (try? Shell.run(try Shell.which("test"), ["-x", parent], asUser: user)) == nil {
      directory = "/var/tmp/rapport/\(Migrator.lockKey(requested).magnitude)"
      try files.createDirectory(atPath: "/var/tmp/rapport", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    }
    if !files.fileExists(atPath: "\(directory)/PG_VERSION") {
      try files.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
      if user != nil { try Shell.run(try Shell.which("chown"), ["-R", runAs, directory]) }
      try Shell.run(
        initdb, ["-D", directory, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-N"],
        asUser: user)
    }
    if let running = runningPort(directory) {
      if (try? Shell.run(pgctl, ["-D", directory, "status"], asUser: user)) != nil {
        return LocalPostgres(directory: directory, port: running)
      }
    }
    let port = try Shell.freePort()
    var options = [
      "-p \(port)", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''",
      "-c max_connections=\(maxConnections)",
    ]
    // Throwaway test clusters trade durability for speed; a suite's cluster gets the shared buffers
    // deploy/postgres/cluster.yaml gives production (PostgreSQL's default is 128 MB).
    options += ephemeral ? ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"] : ["-c shared_buffers=512MB"]
    try Shell.run(
      pgctl, ["-D", directory, "-l", "\(directory)/server.log", "-w", "-t", "60", "-o", options.joined(separator: " "), "start"],
      asUser: user)
    return LocalPostgres(directory: directory, port: port)
  }

  /// Stops the cluster; `fast` ends sessions and flushes data, `immediate` just stops (throwaway clusters).
  public func stop(mode: String = "fast") throws {
    try Shell.run(try Self.binary("pg_ctl"), ["-D", directory, "-m", mode, "-w", "stop"], asUser: getuid() == 0 ? Self.runAs : nil)
  }

  public init(directory: String, port: Int) {
    self.directory = directory
    self.port = port
  }

  /// The port of a cluster already running in `directory`, from its postmaster.pid.
  static func runningPort(_ directory: String) -> Int? {
    guard let text = try? String(contentsOfFile: "\(directory)/postmaster.pid", encoding: .utf8) else { return nil }
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    return lines.count > 3 ? Int(lines[3].trimmingCharacters(in: .whitespaces)) : nil
  }

  /// A PostgreSQL server program: the newest `/usr/lib/postgresql/*/bin`, else PATH.
  public static func binary(_ name: String) throws -> String {
    let root = "/usr/lib/postgresql"
    let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
      .compactMap(Int.init).sorted(by: >)
    for version in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/\(name)") {
      return "\(root)/\(version)/bin/\(name)"
    }
    do { return try Shell.which(name) } catch {
      throw ShellError(description: "\(name) not found: install PostgreSQL (apt-get install -y postgresql)")
    }
  }
}
