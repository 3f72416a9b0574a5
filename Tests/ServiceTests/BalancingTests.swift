import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportProtos
import RapportTesting
import Synchronization
import Testing

/// Client-side balancing: a name that resolves to several addresses (a headless Service's replicas)
/// becomes one endpoint per address, and the clients' round robin spreads calls over all of them.
struct BalancingTests {
  /// Counts the calls a server answered.
  final class Counter: ServerInterceptor, Sendable {
    let calls = Atomic(0)
    func intercept<Input: Sendable, Output: Sendable>(
      request: StreamingServerRequest<Input>, context: ServerContext,
      next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
      calls.add(1, ordering: .relaxed)
      return try await next(request, context)
    }
  }

  /// What grpc-swift-nio-transport's DNS resolver answers for a name with two A records: one
  /// endpoint holding both addresses (asked again on every pull).
  struct OneEndpointTwoAddresses: ResolvableTarget, Sendable {
    var addresses: [SocketAddress]
  }
  struct OneEndpointFactory: NameResolverFactory, Sendable {
    func resolver(for target: OneEndpointTwoAddresses) -> NameResolver {
      let answer = NameResolutionResult(endpoints: [Endpoint(addresses: target.addresses)], serviceConfig: nil)
      let source = NameResolver(
        names: RPCAsyncSequence(wrapping: AsyncThrowingStream { answer }), updateMode: .pull, authority: "replicas")
      return EveryAddress.split(source, every: .milliseconds(200))
    }
  }

  @Test func callsToANameWithTwoAddressesReachBothReplicas() async throws {
    let counters = [Counter(), Counter()]
    let servers = zip(["127.0.0.1", "127.0.0.2"], counters).map { host, counter in
      GRPCServer(
        transport: HTTP2ServerTransport.Posix(address: .ipv4(host: host, port: 0), transportSecurity: .plaintext),
        services: [HealthService(state: HealthState(), services: [])], interceptors: [counter])
    }
    try await withThrowingDiscardingTaskGroup { group in
      for server in servers { group.addTask { try await server.serve() } }
      var addresses: [SocketAddress] = []
      for server in servers {
        let address = try #require(try await server.listeningAddress?.ipv4)
        addresses.append(.ipv4(host: address.host, port: address.port))
      }
      var registry = NameResolverRegistry()
      registry.registerFactory(OneEndpointFactory())
      let client = GRPCClient(
        transport: try HTTP2ClientTransport.Posix(
          target: OneEndpointTwoAddresses(addresses: addresses), transportSecurity: .plaintext,
          resolverRegistry: registry, serviceConfig: GRPCClientService.roundRobin))
      group.addTask { try await client.runConnections() }
      let health = Grpc_Health_V1_Health.Client(wrapping: client)
      var options = CallOptions.defaults
      options.waitForReady = true
      // Bounded: a balancer that never finds a ready replica fails the test instead of hanging the run
      // (one clean-clone CI run hung here for over 5 minutes).
      options.timeout = .seconds(20)
      for _ in 0..<40 { _ = try await health.check(.init(), options: options) }
      // Round robin over two ready endpoints: both answer, neither all.
      let answered = counters.map { $0.calls.load(ordering: .relaxed) }
      #expect(answered.reduce(0, +) == 40)
      #expect(answered.allSatisfy { $0 >= 10 }, "calls per replica: \(answered)")
      client.beginGracefulShutdown()
      for server in servers { server.beginGracefulShutdown() }
    }
  }

  /// The path every service's client takes for a host name (Kubernetes Service names): DNS through
  /// `EveryAddress`, round robin.
  @Test func aServiceClientReachesAServerByHostName() async throws {
    let counter = Counter()
    let server = GRPCServer(
      transport: HTTP2ServerTransport.Posix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
      services: [HealthService(state: HealthState(), services: [])], interceptors: [counter])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      let port = try #require(try await server.listeningAddress?.ipv4).port
      let config = CommonConfig(name: "test", listen: HostPort(host: "127.0.0.1", port: 0), databaseURL: nil)
      let client = try GRPCClientService.client(to: HostPort(host: "localhost", port: port), config: config)
      group.addTask { try await client.runConnections() }
      var options = CallOptions.defaults
      options.waitForReady = true
      // Bounded: a balancer that never finds a ready replica fails the test instead of hanging the run
      // (one clean-clone CI run hung here for over 5 minutes).
      options.timeout = .seconds(20)
      _ = try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init(), options: options)
      #expect(counter.calls.load(ordering: .relaxed) == 1)
      client.beginGracefulShutdown()
      server.beginGracefulShutdown()
    }
  }

  @Test func oneEndpointPerAddressInAStableOrder() {
    let a = SocketAddress.ipv4(host: "10.0.0.2", port: 50052), b = SocketAddress.ipv4(host: "10.0.0.1", port: 50052)
    let split = EveryAddress.split([Endpoint(addresses: [a, b])])
    #expect(split.map(\.addresses) == [[b], [a]])
  }
}
