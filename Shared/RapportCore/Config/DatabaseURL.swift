import Foundation
import NIOSSL
import PostgresNIO

/// A PostgreSQL connection URL, `postgres://user[:password]@host[:port]/database[?sslmode=disable]`.
public struct DatabaseURL: Sendable, Hashable, CustomStringConvertible {
  public var host: String
  public var port: Int
  public var user: String
  public var password: String?
  public var database: String
  /// True unless `sslmode=disable`.
  public var tls: Bool

  public init(host: String, port: Int, user: String, password: String? = nil, database: String, tls: Bool = false) {
    self.host = host
    self.port = port
    self.user = user
    self.password = password
    self.database = database
    self.tls = tls
  }

  public init(parsing text: String) throws {
    guard let components = URLComponents(string: text),
      ["postgres", "postgresql"].contains(components.scheme ?? ""),
      let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty
    else { throw ConfigurationError("database URL must look like postgres://user@host:port/database") }
    let database = String(components.path.drop(while: { $0 == "/" }))
    guard !database.isEmpty else { throw ConfigurationError("database URL names no database") }
    let sslmode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value
    self.init(
      host: host, port: components.port ?? 5432, user: user, password: components.password,
      database: database, tls: sslmode != nil && sslmode != "disable")
  }

  /// The same server and database as another role.
  public func with(user: String, password: String? = nil) -> DatabaseURL {
    var copy = self
    copy.user = user
    copy.password = password
    return copy
  }

  /// The same server and role, another database.
  public func with(database: String) -> DatabaseURL {
    var copy = self
    copy.database = database
    return copy
  }

  /// The URL without its password, safe to log.
  public var description: String {
    "postgres://\(user)@\(host):\(port)/\(database)\(tls ? "" : "?sslmode=disable")"
  }

  /// The URL with its password, for passing to child processes.
  public var urlString: String {
    let credentials = password.map { "\(user):\($0)" } ?? user
    return "postgres://\(credentials)@\(host):\(port)/\(database)\(tls ? "" : "?sslmode=disable")"
  }

  /// A single connection's configuration for this URL.
  public func connectionConfiguration() throws -> PostgresConnection.Configuration {
    PostgresConnection.Configuration(
      host: host, port: port, username: user, password: password, database: database,
      tls: tls ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable)
  }

  /// postgres-nio's client configuration for this URL.
  /// - Parameter applicationName: shown in `pg_stat_activity.application_name` for every connection.
  /// - Parameter genericPlans: every statement on these connections is planned once per prepared statement
  ///   (`plan_cache_mode = force_generic_plan`), for a pool that runs only statements whose best plan does
  ///   not depend on their values (`Pools.genericPlans`).
  public func clientConfiguration(
    maxConnections: Int, applicationName: String? = nil, genericPlans: Bool = false
  ) -> PostgresClient.Configuration {
    var configuration = PostgresClient.Configuration(
      host: host, port: port, username: user, password: password, database: database,
      tls: tls ? .require(.makeClientConfiguration()) : .disable)
    configuration.options.maximumConnections = maxConnections
    configuration.options.connectTimeout = .seconds(3)
    // JIT off: every Rapport statement is short, but estimates on `generate_series` and CTEs can cross
    // PostgreSQL's JIT cost threshold, and then compiling costs more than running (seen by hand with
    // EXPLAIN ANALYZE on analytics' sales summary over 30,000 orders).
    configuration.options.additionalStartupParameters = [("jit", "off")]
    if let applicationName { configuration.options.additionalStartupParameters.append(("application_name", applicationName)) }
    if genericPlans { configuration.options.additionalStartupParameters.append(("plan_cache_mode", "force_generic_plan")) }
    return configuration
  }
}
