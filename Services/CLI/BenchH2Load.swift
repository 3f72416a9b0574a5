import Foundation
#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import Synchronization

/// The bench's C-client rows: h2load (light on the shared cores) sends one gRPC request body over one
/// HTTP/2 connection with many streams in flight. h2load counts any HTTP 200 as a success, and a gRPC
/// error is an HTTP 200, so every row reports the service's own OK count for the method from its
/// `/metrics` (read before and after) and the rate counts only those.
extension Bench {
  /// Where the bench's services serve `/metrics` (next to `rapport up`'s ports, so both can run).
  static let metricsPorts = Stack.defaultMetricsPorts.mapValues { $0 + 10 }

  struct H2LoadTarget {
    var name: String
    var service: String
    var address: HostPort
    /// `/package.Service/Method`.
    var path: String
    /// The serialized request message.
    var message: [UInt8]
  }

  /// Runs h2load for `requests` requests (`-c 1 -m streams`) and returns a row whose OK count is the
  /// server's own.
  func h2load(_ target: H2LoadTarget, requests: Int, streams: Int = 64) async throws -> Row {
    print("measuring \(target.name) with h2load")
    let (output, ok) = try await Self.runH2Load(target, requests: requests, streams: streams)
    // "finished in 2.61s, 7654.32 req/s, 1.2MB/s"
    guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("finished in") }),
      let secondsText = line.split(separator: " ").dropFirst(2).first?.dropLast(2), let seconds = Double(secondsText)
    else { throw ShellError(description: "h2load printed no result:\n\(output)") }
    return Row(
      name: "\(target.name) (h2load -c 1 -m \(streams) -n \(requests))", ok: ok, errors: requests - ok,
      seconds: seconds, p50: nil, p90: nil, p99: nil, max: nil, benchCPU: nil, serverCPU: nil)
  }

  /// Runs h2load for `requests` requests one at a time (`-c 1 -m 1`) and returns the server's OK count
  /// and each request's time until the end of its response (h2load's `--log-file`), in microseconds.
  static func h2loadLatencies(_ target: H2LoadTarget, requests: Int) async throws -> (ok: Int, microseconds: [UInt64]) {
    let log = NSTemporaryDirectory() + "rapport-h2load-\(UUID().uuidString).log"
    defer { try? FileManager.default.removeItem(atPath: log) }
    let (output, ok) = try await runH2Load(target, requests: requests, streams: 1, extra: ["--log-file", log])
    // start time (µs since the epoch), HTTP status, µs until the end of the response
    let durations = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap {
      $0.split(separator: "\t").dropFirst(2).first.flatMap { UInt64($0) }
    }
    guard durations.count == requests else {
      throw ShellError(description: "h2load logged \(durations.count) of \(requests) requests:\n\(output)")
    }
    return (ok, durations)
  }

  /// Sends the target's request `requests` times with h2load; returns its output and how many calls the
  /// service counted as OK meanwhile.
  private static func runH2Load(
    _ target: H2LoadTarget, requests: Int, streams: Int, extra: [String] = []
  ) async throws -> (output: String, ok: Int) {
    let body = NSTemporaryDirectory() + "rapport-h2load-\(UUID().uuidString).bin"
    defer { try? FileManager.default.removeItem(atPath: body) }
    let length = UInt32(target.message.count)
    let frame = [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
    try Data(frame + target.message).write(to: URL(fileURLWithPath: body))
    let method = String(target.path.dropFirst())
    let port = metricsPorts[target.service]!
    let okBefore = try await okCount(method, metricsPort: port)
    let output = try await Shell.run(
      try Shell.which("h2load"),
      [
        "-n", "\(requests)", "-c", "1", "-m", "\(streams)", "-d", body, "-H", "content-type: application/grpc",
        "-H", "te: trailers",
      ] + extra + ["http://\(target.address.host):\(target.address.port)\(target.path)"])
    return (output, try await okCount(method, metricsPort: port) - okBefore)
  }

  /// `rpc_server_calls_total{method=…,code="OK"}` from a service's `/metrics`.
  static func okCount(_ method: String, metricsPort: Int) async throws -> Int {
    let url = URL(string: "http://127.0.0.1:\(metricsPort)/metrics")!
    let (data, _) = try await URLSession.shared.data(from: url)
    let wanted = "rpc_server_calls_total{method=\"\(method)\",code=\"OK\"}"
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
      let parts = line.split(separator: " ")
      if parts.count == 2, parts[0] == wanted { return Int(Double(parts[1]) ?? 0) }
    }
    return 0
  }

  /// Resident memory of a process in MB, from /proc.
  static func residentMB(_ pid: Int32) -> Double? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
    else { return nil }
    return kilobytes / 1024
  }

  /// Asks `deadlineViews` views, 4 at a time, each with a 250 ms deadline, while `background` runs from
  /// `concurrency` tasks; a view counts when it comes back as a view (sections may be partial), an error
  /// when the whole call fails.
  func deadlineViews(
    _ gateway: Rapport_Gateway_V1_PartnerGateway.Client<HTTP2ClientTransport.Posix>, ids: [String],
    background: @escaping @Sendable (Int) async throws -> Void, _ services: [ChildProcess]
  ) async throws -> Row {
    let total = deadlineViews
    print("measuring \(total) views with a 250 ms deadline under GetCustomer load")
    var options = CallOptions.defaults
    options.timeout = .milliseconds(250)
    let callOptions = options
    let start = ContinuousClock.now
    let (ok, failed) = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
      let stop = ManagedAtomicFlag()
      for worker in 0..<concurrency {
        group.addTask {
          var n = worker
          while !stop.isSet {
            try? await background(n)
            n += self.concurrency
          }
          return (0, 0)
        }
      }
      let views = try await withThrowingTaskGroup(of: (Int, Int).self) { viewers in
        for viewer in 0..<4 {
          viewers.addTask {
            var (ok, failed) = (0, 0)
            for n in stride(from: viewer, to: total, by: 4) {
              do {
                _ = try await gateway.getCustomerView(.with { $0.customerID = ids[n % ids.count] }, options: callOptions)
                ok += 1
              } catch {
                failed += 1
              }
            }
            return (ok, failed)
          }
        }
        var sum = (0, 0)
        for try await part in viewers { sum = (sum.0 + part.0, sum.1 + part.1) }
        return sum
      }
      stop.set()
      try await group.waitForAll()
      return views
    }
    return Row(
      name: "GetCustomerView, 250 ms deadline, 4 at a time, while GetCustomer runs from \(concurrency) tasks",
      ok: ok, errors: failed, seconds: Self.seconds(ContinuousClock.now - start), p50: nil, p90: nil, p99: nil,
      max: nil, benchCPU: nil, serverCPU: nil)
  }
}

/// A flag set once, read from many tasks.
final class ManagedAtomicFlag: Sendable {
  private let value = Mutex(false)
  var isSet: Bool { value.withLock { $0 } }
  func set() { value.withLock { $0 = true } }
}
