import GRPCCore
import GRPCNIOTransportHTTP2

/// Client-side, per-call balancing over every address a name resolves to: a Kubernetes headless
/// Service's name resolves to one address per ready pod, and each becomes its own endpoint, so the
/// `round_robin` policy (set by `GRPCClientService.client`) spreads calls over all replicas.
///
/// Why this exists: grpc-swift-nio-transport 2.9.2's DNS resolver returns all of a name's addresses
/// as *one* endpoint (one subchannel, one connection), so round robin over it has a single choice.
/// This resolver asks that same DNS resolver (no DNS of its own) and splits its answer, one endpoint
/// per address; it re-resolves every `interval`, so replicas added by scaling out are picked up and
/// removed ones dropped.
public enum EveryAddress {
  /// The target: `host:port` by DNS, one endpoint per address.
  public struct Target: ResolvableTarget, Sendable {
    public var dns: ResolvableTargets.DNS
    public var interval: Duration
  }

  /// Builds the resolver for `Target`; registered with the clients' resolver registry.
  public struct Factory: NameResolverFactory, Sendable {
    public init() {}

    public func resolver(for target: Target) -> NameResolver {
      EveryAddress.split(NameResolvers.DNS().resolver(for: target.dns), every: target.interval)
    }
  }

  /// `source`'s answers with one endpoint per address, asked again every `interval` and pushed when
  /// they change. A failed lookup keeps the last answer (only a first failure reaches the client).
  public static func split(_ source: NameResolver, every interval: Duration) -> NameResolver {
    let split = AsyncThrowingStream<NameResolutionResult, any Error> { continuation in
      let task = Task {
        var answers = source.names.makeAsyncIterator()
        var last: [[SocketAddress]]?
        while !Task.isCancelled {
          do {
            guard let result = try await answers.next() else { break }
            let endpoints = Self.split(result.endpoints)
            // Unchanged answers are not pushed: each push makes the balancer reconcile its subchannels.
            if endpoints.map(\.addresses) != last {
              last = endpoints.map(\.addresses)
              continuation.yield(NameResolutionResult(endpoints: endpoints, serviceConfig: result.serviceConfig))
            }
          } catch is CancellationError {
            break
          } catch {
            if last == nil {
              continuation.finish(throwing: error)
              return
            }
          }
          try? await Task.sleep(for: interval)
        }
        continuation.finish()
      }
      continuation.onTermination = { _ in task.cancel() }
    }
    return NameResolver(names: RPCAsyncSequence(wrapping: split), updateMode: .push, authority: source.authority)
  }

  /// One endpoint per address, in a stable order.
  public static func split(_ endpoints: [Endpoint]) -> [Endpoint] {
    endpoints.flatMap(\.addresses).map { Endpoint(addresses: [$0]) }.sorted { "\($0.addresses)" < "\($1.addresses)" }
  }
}

extension ResolvableTarget where Self == EveryAddress.Target {
  /// `host:port` by DNS, one endpoint per address, re-resolved every `interval`.
  public static func everyAddress(host: String, port: Int, interval: Duration = .seconds(30)) -> Self {
    EveryAddress.Target(dns: .dns(host: host, port: port), interval: interval)
  }
}
