import CoreMetrics
import GRPCCore
import Prometheus
import Synchronization

/// Per-method RPC metrics through swift-metrics, recorded by `ServingInterceptor`:
/// - `rpc_server_calls_total{method, code}`: finished calls by gRPC status code name;
/// - `rpc_server_duration_seconds{method}`: latency histogram;
/// - `rpc_server_in_flight{method}`: calls started and not finished.
/// Each process (and each in-process test server) has its own Prometheus registry, rendered by
/// `text()` and served on `--metrics-addr` by `MetricsEndpoint`.
public final class RPCMetrics: Sendable {
  public let registry: PrometheusCollectorRegistry
  private let factory: PrometheusMetricsFactory
  private let methods = Mutex<[String: Method]>([:])
  /// Run before each rendering: they record what is read rather than counted by the registry's handles.
  private let collectors = Mutex<[@Sendable () -> Void]>([])

  public init() {
    registry = PrometheusCollectorRegistry()
    factory = PrometheusMetricsFactory(registry: registry)
  }

  struct Method: Sendable {
    let duration: CoreMetrics.Timer
    let inFlight: Meter
    var calls: [Int: CoreMetrics.Counter]
  }

  /// One call being served.
  public struct Call: Sendable {
    let metrics: RPCMetrics
    let method: String
    let started: ContinuousClock.Instant

    /// Records the end of the call with its status code.
    public func end(_ code: Status.Code) {
      let elapsed = ContinuousClock.now - started
      let (duration, inFlight, calls) = metrics.handles(method, code: code)
      duration.recordNanoseconds(elapsed.nanoseconds)
      inFlight.decrement()
      calls.increment()
    }
  }

  /// Starts timing a call of `method` (`package.Service/Method`).
  public func begin(_ method: String) -> Call {
    handles(method, code: nil).1.increment()
    return Call(metrics: self, method: method, started: .now)
  }

  /// The number of finished calls of `method` that ended with `code`, as exported.
  public func calls(_ method: String, code: Status.Code) -> Int {
    let text = self.text()
    let prefix = "rpc_server_calls_total{method=\"\(method)\",code=\"\(code.name)\"} "
    let line = text.split(separator: "\n").first { $0.hasPrefix(prefix) }
    return line.flatMap { Int($0.dropFirst(prefix.count)) } ?? 0
  }

  /// The metrics of the process whose services are running (set by `ServiceApp.run` for everything it
  /// starts), for workers that report their own: feed lag, periodic passes.
  @TaskLocal public static var current: RPCMetrics?

  /// A gauge in this registry.
  public func gauge(_ label: String, _ dimensions: [(String, String)]) -> CoreMetrics.Gauge {
    CoreMetrics.Gauge(label: label, dimensions: dimensions, factory: factory)
  }

  /// A counter in this registry.
  public func counter(_ label: String, _ dimensions: [(String, String)]) -> CoreMetrics.Counter {
    CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory)
  }

  /// The registry in Prometheus text format.
  public func text() -> String {
    for collect in collectors.withLock({ $0 }) { collect() }
    return registry.emitToString()
  }

  /// Exports `queue` at every rendering: `rapport_db_lease_requests_waiting{pool}` (requests waiting for a
  /// connection now), `rapport_db_leases_total{pool}` and `rapport_db_lease_wait_seconds_total{pool}` (their
  /// rate over a window is the mean number of requests waiting in it, by Little's law).
  public func export(_ queue: LeaseQueue) {
    let labels = [("pool", queue.pool)]
    let waiting = gauge("rapport_db_lease_requests_waiting", labels)
    let leases = counter("rapport_db_leases_total", labels)
    let waited = FloatingPointCounter(label: "rapport_db_lease_wait_seconds_total", dimensions: labels, factory: factory)
    let exported = Mutex<(leases: Int, waited: Duration)>((0, .zero))
    collectors.withLock {
      $0.append {
        waiting.record(queue.waiting)
        exported.withLock { last in
          let now = (leases: queue.granted, waited: queue.waited)
          leases.increment(by: now.leases - last.leases)
          waited.increment(by: Double((now.waited - last.waited).nanoseconds) / 1e9)
          last = now
        }
      }
    }
  }

  private func handles(_ method: String, code: Status.Code?) -> (CoreMetrics.Timer, Meter, CoreMetrics.Counter) {
    methods.withLock { methods in
      var entry =
        methods[method]
        ?? Method(
          duration: CoreMetrics.Timer(
            label: "rpc_server_duration_seconds", dimensions: [("method", method)], factory: factory),
          inFlight: Meter(label: "rpc_server_in_flight", dimensions: [("method", method)], factory: factory),
          calls: [:])
      let code = code ?? .ok
      let counter =
        entry.calls[code.rawValue]
        ?? CoreMetrics.Counter(label: "rpc_server_calls_total", dimensions: [("method", method), ("code", code.name)], factory: factory)
      entry.calls[code.rawValue] = counter
      methods[method] = entry
      return (entry.duration, entry.inFlight, counter)
    }
  }
}

extension Duration {
  var nanoseconds: Int64 {
    let (seconds, attoseconds) = components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
  }
}

extension Status.Code {
  /// The canonical upper-case name, e.g. `UNAVAILABLE`.
  public var name: String {
    let names = [
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
      "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]
    return names.indices.contains(rawValue) ? names[rawValue] : "CODE_\(rawValue)"
  }
}
