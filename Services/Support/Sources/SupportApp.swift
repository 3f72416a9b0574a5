import Logging
import RapportCore
import RapportProtos

/// Builds the support service process; `main` and the tests both call this.
public enum SupportApp {
  public static let defaultPort = 50053

  /// Timed work of the support service.
  public struct Timing: Sendable {
    /// How often SLA due times and solved tickets are scanned.
    public var scanInterval: Duration
    /// A ticket SOLVED this long ago is closed.
    public var closeSolvedAfter: Duration
    /// Where "now" comes from (tests move it).
    public var clock: WallClock

    public init(scanInterval: Duration = .seconds(15), closeSolvedAfter: Duration = .seconds(7 * 86_400), clock: WallClock = .system) {
      self.scanInterval = scanInterval
      self.closeSolvedAfter = closeSolvedAfter
      self.clock = clock
    }
  }

  /// Reads the common settings plus `customer-addr` (customer checks and the customer feed),
  /// `order-addr` (order checks), `upstream-timeout-ms` (default 1000), `scan-interval-ms` (default
  /// 15000), `auto-close-after-days` (default 7) and `clock-file` (see `Settings.clock`).
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(
      config: CommonConfig(settings: settings, name: "support", defaultPort: defaultPort),
      customerAddress: settings.address("customer-addr", default: "127.0.0.1:50051"),
      orderAddress: settings.address("order-addr", default: "127.0.0.1:50052"),
      upstreamTimeout: settings.milliseconds("upstream-timeout-ms", default: 1000),
      timing: Timing(
        scanInterval: settings.milliseconds("scan-interval-ms", default: 15_000),
        closeSolvedAfter: .seconds(86_400 * (try settings.int("auto-close-after-days", default: 7))),
        clock: settings.clock),
      logger: logger)
  }

  /// Who may call what (enforced under mutual TLS): tickets from the gateway and operators; the feed
  /// from analytics.
  public static let callers: CallerPolicy = {
    typealias C = CallerPolicy.Caller
    return CallerPolicy([
      "rapport.support.v1.SupportService": [C.gateway, C.operator], CallerPolicy.eventFeed: [C.analytics],
    ])
  }()

  /// - Parameter orderAddress: where to check the orders tickets are about; nil refuses tickets with an
  ///   order (UNAVAILABLE).
  public static func build(
    config: CommonConfig, customerAddress: HostPort, orderAddress: HostPort? = nil, upstreamTimeout: Duration = .seconds(1),
    timing: Timing = Timing(), logger: Logger
  ) throws -> ServiceApp {
    let customerClient = try GRPCClientService.client(to: customerAddress, config: config)
    let orderClient = try orderAddress.map { try GRPCClientService.client(to: $0, config: config) }
    let directory = SupportDirectory(
      customers: .init(wrapping: customerClient), orders: orderClient.map { .init(wrapping: $0) },
      timeout: upstreamTimeout, logger: logger)
    let closeAfter = Double(timing.closeSolvedAfter.components.seconds)
    return try .publishing(
      config: config, schema: SupportMigrations.schema, migrations: SupportMigrations.all,
      serviceName: "rapport.support.v1.SupportService", clients: [customerClient] + (orderClient.map { [$0] } ?? []),
      callers: callers, logger: logger,
      workers: { postgres in
        let store = SupportStore(client: postgres, logger: logger)
        let clock = timing.clock
        return [
          EventSubscription.customerLifecycle(
            client: customerClient, schema: SupportMigrations.schema, postgres: postgres, logger: logger,
            effect: store.applyCustomerEvent),
          Periodic("support scan", every: timing.scanInterval, logger: logger) {
            while try await store.breachDueTargets(now: clock.now) == SupportStore.scanBatch {}
            let now = clock.now
            while try await store.closeSolvedTickets(solvedBefore: now.addingTimeInterval(-closeAfter), now: now)
              == SupportStore.scanBatch
            {}
          },
        ]
      }
    ) { pools in
      [
        SupportRPCs(
          store: SupportStore(client: pools.main, logger: logger, genericPlans: pools.genericPlans), directory: directory, clock: timing.clock,
          logger: logger)
      ]
    }
  }
}
