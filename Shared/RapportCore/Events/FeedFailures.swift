import Foundation
import GRPCCore
import Synchronization

/// The most recent failure of each feed subscription of a process, for status RPCs
/// (analytics' `GetPipelineStatus`): what operators would otherwise dig out of the log.
public final class FeedFailures: Sendable {
  private let failures = Mutex<[String: (message: String, time: Date)]>([:])

  public init() {}

  /// Records `error` as `source`'s latest failure: a gRPC status as `code: message`; anything else (a
  /// batch that could not be applied) without its internals.
  public func record(_ source: String, _ error: any Error) {
    let message =
      (error as? RPCError).map { "\($0.code): \($0.message)" } ?? "could not apply a batch of events; see the service log"
    failures.withLock { $0[source] = (message, Date()) }
  }

  /// `source`'s latest failure, if any.
  public func latest(_ source: String) -> (message: String, time: Date)? { failures.withLock { $0[source] } }
}
