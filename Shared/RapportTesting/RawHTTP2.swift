import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import RapportCore
import RapportLocal

/// One HTTP/2 request written frame by frame, for what no well-behaved gRPC client sends: malformed
/// `grpc-timeout` headers, a request body that never comes, a length prefix larger than the limit.
public enum RawHTTP2 {
  /// What came back on the stream.
  public struct Reply: Sendable {
    /// Every header field of every HEADERS frame received (response headers and trailers).
    public var fields: [(name: String, value: String)] = []
    /// True when the server ended the stream (END_STREAM or RST_STREAM) before the wait ran out.
    public var ended = false
    /// `grpc-status`, if the server sent one.
    public var grpcStatus: Int? { fields.first { $0.name == "grpc-status" }.flatMap { Int($0.value) } }
    public var grpcMessage: String? { fields.first { $0.name == "grpc-message" }?.value }
  }

  /// Sends a gRPC request to `path` with `extraHeaders` and `body` (gRPC-framed bytes; nil sends no DATA
  /// frame at all), ending the request side only if `endRequest`, and collects the reply for up to `wait`.
  public static func call(
    _ address: HostPort, path: String, extraHeaders: [(String, String)] = [], body: [UInt8]? = nil,
    endRequest: Bool = true, wait: Duration = .seconds(10)
  ) async throws -> Reply {
    let (connection, multiplexer) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connect(host: address.host, port: address.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          let multiplexer = try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(mode: .client) { stream in
            stream.eventLoop.makeSucceededVoidFuture()
          }
          return (channel, multiplexer)
        }
      }
    defer { connection.close(promise: nil) }
    let stream = try await multiplexer.openStream { channel in
      channel.eventLoop.makeCompletedFuture {
        try NIOAsyncChannel<HTTP2Frame.FramePayload, HTTP2Frame.FramePayload>(wrappingChannelSynchronously: channel)
      }
    }
    var headers = HPACKHeaders([
      (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "\(address)"),
      ("content-type", "application/grpc"), ("te", "trailers"),
    ])
    for (name, value) in extraHeaders { headers.add(name: name, value: value) }
    return try await stream.executeThenClose { inbound, outbound in
      try await outbound.write(.headers(.init(headers: headers, endStream: endRequest && body == nil)))
      if let body {
        do {
          try await outbound.write(.data(.init(data: .byteBuffer(ByteBuffer(bytes: body)), endStream: endRequest)))
        } catch ChannelError.ioOnClosedChannel {
          // The server answered on the headers alone (a malformed grpc-timeout) and closed the stream.
        }
      }
      return try await withThrowingTaskGroup(of: Reply?.self) { group in
        group.addTask {
          var reply = Reply()
          do {
            for try await frame in inbound {
              switch frame {
              case .headers(let received):
                reply.fields += received.headers.map { (name: $0.name, value: $0.value) }
                if received.endStream { reply.ended = true }
              case .data(let data) where data.endStream: reply.ended = true
              case .rstStream: reply.ended = true
              default: break
              }
              if reply.ended { break }
            }
          } catch {
            reply.ended = true  // the stream was reset
          }
          return reply
        }
        group.addTask {
          try await Task.sleep(for: wait)
          return nil
        }
        let first = try await group.next() ?? nil
        group.cancelAll()
        return first ?? Reply()
      }
    }
  }

  /// A gRPC message frame: flag 0, big-endian length, payload.
  public static func frame(_ payload: [UInt8], declaredLength: Int? = nil) -> [UInt8] {
    let length = UInt32(declaredLength ?? payload.count)
    return [0, UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
      + payload
  }
}
