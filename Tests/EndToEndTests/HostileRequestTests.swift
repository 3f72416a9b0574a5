import Foundation
import Synchronization
import RapportCore
import RapportLocal
import RapportTesting
import Testing

extension Executables {
  /// Requests no well-behaved client sends, written frame by frame against the real executables: each is
  /// answered with a precise gRPC status, and every service keeps serving afterwards.
  @Suite struct HostileRequestTests {
    static let malformedTimeouts = ["-1S", "-0n", "123456789S", "1x", "", "S", "1.5S", "+1S", " 1S"]

    /// One stack for all three (each stack is five processes on a shared 2-core machine); the customer
    /// service runs with a 1.5 s request idle limit.
    @Test func malformedTimeoutsStalledBodiesAndOversizedMessagesGetPreciseStatusesAndNoServiceGoesDown()
      async throws
    {
      try await withStack("hostile", settings: ["customer": ["request-idle-timeout-ms": "1500"]]) { stack in
        try await malformedGrpcTimeoutsAreRefused(stack)
        try await aRequestWhoseBodyNeverComesEndsAtItsDeadlineOrTheIdleLimit(stack)
        try await aMessageOverTheSizeLimitIsResourceExhaustedNotAReset(stack)
      }
    }

    private func malformedGrpcTimeoutsAreRefused(_ stack: Stack) async throws {
      do {
        for entry in stack.processes {
          for value in Self.malformedTimeouts {
            let reply = try await RawHTTP2.call(
              entry.address, path: "/grpc.health.v1.Health/Check", extraHeaders: [("grpc-timeout", value)],
              body: RawHTTP2.frame([]))
            #expect(reply.grpcStatus == 3, "\(entry.name), grpc-timeout '\(value)': \(reply.fields)")
            #expect(reply.grpcMessage == "malformed grpc-timeout header")
          }
          // Twice the header is malformed too; a well-formed one is served.
          let twice = try await RawHTTP2.call(
            entry.address, path: "/grpc.health.v1.Health/Check",
            extraHeaders: [("grpc-timeout", "1S"), ("grpc-timeout", "2S")], body: RawHTTP2.frame([]))
          #expect(twice.grpcStatus == 3)
          let fine = try await RawHTTP2.call(
            entry.address, path: "/grpc.health.v1.Health/Check", extraHeaders: [("grpc-timeout", "5S")],
            body: RawHTTP2.frame([]))
          #expect(fine.grpcStatus == 0, "\(entry.name): \(fine.fields)")
          #expect(entry.process.isRunning, "\(entry.name) exited")
          try await Stack.waitUntilServing(entry.address)
        }
      }
    }

    private func aRequestWhoseBodyNeverComesEndsAtItsDeadlineOrTheIdleLimit(_ stack: Stack) async throws {
      do {
        for entry in stack.processes where entry.name != "customer" {
          // Headers with a 2 s deadline and never a body.
          let started = ContinuousClock.now
          let reply = try await RawHTTP2.call(
            entry.address, path: "/grpc.health.v1.Health/Check", extraHeaders: [("grpc-timeout", "2S")],
            body: nil, endRequest: false, wait: .seconds(8))
          let elapsed = ContinuousClock.now - started
          #expect(reply.ended && reply.grpcStatus == 4, "\(entry.name): \(reply.fields)")
          #expect(elapsed >= .seconds(2) && elapsed < .seconds(6), "\(entry.name) ended the stream after \(elapsed)")
        }
        // No deadline at all, or a longer one: the customer service's idle limit (1.5 s here) ends it.
        for timeout in [nil, "2S"] {
          let started = ContinuousClock.now
          let reply = try await RawHTTP2.call(
            stack.address("customer"), path: "/rapport.customer.v1.CustomerService/GetCustomer",
            extraHeaders: timeout.map { [("grpc-timeout", $0)] } ?? [], body: nil, endRequest: false, wait: .seconds(8))
          let elapsed = ContinuousClock.now - started
          #expect(reply.ended && reply.grpcStatus == 4, "\(reply.fields)")
          #expect(reply.grpcMessage?.hasPrefix("request not completed") == true, "\(reply.fields)")
          #expect(elapsed >= .seconds(1.5) && elapsed < .seconds(2), "ended after \(elapsed)")
        }
      }
    }

    private func aMessageOverTheSizeLimitIsResourceExhaustedNotAReset(_ stack: Stack) async throws {
      do {
        for entry in stack.processes {
          // A 5 MB message announced by its length prefix; the first 16 KiB of it sent.
          let reply = try await RawHTTP2.call(
            entry.address, path: "/grpc.health.v1.Health/Check",
            body: RawHTTP2.frame([UInt8](repeating: 0x41, count: 16_384), declaredLength: 5_000_000),
            endRequest: false)
          #expect(reply.grpcStatus == 8, "\(entry.name): \(reply.fields)")
          #expect(entry.process.isRunning)
        }
      }
    }

    @Test func everyExecutableAnswersHelpAndVersionAndRefusesUnknownFlags() async throws {
      let directory = try Stack.binaryDirectory()
      for name in Stack.order {
        let help = try await run("\(directory)/rapport-\(name)", ["--help"])
        #expect(help.status == 0 && help.output.contains("--database-url") && help.output.contains("--metrics-addr"))
        let version = try await run("\(directory)/rapport-\(name)", ["--version"])
        #expect(version.status == 0 && version.output.contains(RapportVersion.description))
        let unknown = try await run("\(directory)/rapport-\(name)", ["--no-such-flag"])
        #expect(unknown.status != 0 && unknown.output.contains("no-such-flag"), "\(name): \(unknown)")
      }
    }

    /// Secure by default (issue 12 §6): no service listens in plaintext unless told to (`--plaintext`),
    /// and the gateway requires partner keys, so it needs its database, unless told `--partner-auth off`.
    @Test func noServiceListensInPlaintextOrWithoutPartnerKeysUnlessToldTo() async throws {
      let directory = try Stack.binaryDirectory()
      for name in Stack.order {
        let upper = name.uppercased()
        let refused = try await run(
          "/usr/bin/env",
          ["RAPPORT_\(upper)_DATABASE_URL=postgres://nobody@127.0.0.1:1/none", "RAPPORT_\(upper)_ADDR=127.0.0.1:0", "\(directory)/rapport-\(name)"])
        #expect(refused.status != 0 && refused.output.contains("no TLS: pass --tls-cert"), "\(name): \(refused)")
      }
      let keyless = try await run("\(directory)/rapport-gateway", ["--plaintext", "--addr", "127.0.0.1:0"])
      #expect(keyless.status != 0 && keyless.output.contains("partner-auth required needs --database-url"), "\(keyless)")
    }

    /// `--version` names the commit the binaries were built from: the checkout's own HEAD (with
    /// `-dirty` when it has uncommitted changes).
    @Test func theVersionNamesTheCommitTheBinariesWereBuiltFrom() async throws {
      let root = repositoryRoot
      let head = try await run("/usr/bin/git", ["-C", root.path, "rev-parse", "--short=12", "HEAD"])
      try #require(head.status == 0, "the tests run from a git checkout")
      #expect(RapportVersion.commit.hasPrefix(head.output.trimmingCharacters(in: .whitespacesAndNewlines)))
      let cli = try await run("\(try Stack.binaryDirectory())/rapport", ["--version"])
      #expect(cli.status == 0 && cli.output.trimmingCharacters(in: .whitespacesAndNewlines) == RapportVersion.description)
    }

    /// Runs an executable to its end (they must not start listening for these; one still running after
    /// 15 s is killed), output and status; the wait on a thread of its own (`Shell.onOwnThread`).
    private func run(_ path: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
      try await Shell.onOwnThread { try Shell.outcome(path, arguments, timeout: .seconds(15)) }
    }
  }
}

extension Executables {
  /// `rapport up`'s supervision: a service that dies is reported and restarted on its address.
  @Suite struct SupervisionTests {
    @Test func aKilledServiceIsRestartedOnItsAddressAndServesAgain() async throws {
      try await withStack("supervise") { stack in
        let said = Mutex<[String]>([])
        let supervisor = Task { await stack.supervise { line in said.withLock { $0.append(line) } } }
        defer { supervisor.cancel() }
        let before = stack.process("order").pid
        stack.process("order").signal(SIGKILL)
        try await eventually(within: .seconds(30), "order restarted") {
          let current = stack.process("order")
          return current.pid != before && current.isRunning
        }
        try await Stack.waitUntilServing(stack.address("order"))
        let lines = said.withLock { $0 }
        #expect(lines.contains { $0.hasPrefix("rapport-order exited") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("rapport-order restarted at \(stack.address("order"))") }, "\(lines)")
      }
    }
  }
}
