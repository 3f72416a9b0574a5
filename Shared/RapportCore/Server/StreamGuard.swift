import NIOCore
import NIOHPACK
import NIOHTTP2

/// The first handler of every HTTP/2 stream a Rapport server accepts (installed through
/// grpc-swift-nio-transport's `onAcceptHTTP2Stream`, ahead of gRPC's own stream handler). It enforces
/// what must hold before gRPC parses anything, and what must hold even when a handler never returns:
///
/// - a malformed `grpc-timeout` header (anything but 1–8 ASCII digits and one of `HMSmun`, or the header
///   twice) is answered INVALID_ARGUMENT and never reaches grpc-swift, whose parser traps on a negative
///   amount (grpc-swift-2 2.4.3, `Timeout(decoding:)`);
/// - a request message whose length prefix exceeds `maxMessageBytes` is answered RESOURCE_EXHAUSTED (the
///   transport would reset the stream, which a client sees as CANCELLED);
/// - a stream still open `deadlineGrace` after its `grpc-timeout` is ended DEADLINE_EXCEEDED, and a
///   request that sends nothing for `requestIdleTimeout` before it is complete (headers and never a body)
///   is ended DEADLINE_EXCEEDED too: every stream ends at its deadline or at a server-side limit.
///
/// Answers are trailers-only responses (`:status 200`, `grpc-status`, `grpc-message`), then
/// RST_STREAM(NO_ERROR) if the client is still sending, and the stream is closed; nothing later from the
/// client is passed on.
final class StreamGuard: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias InboundOut = HTTP2Frame.FramePayload
  typealias OutboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  /// The limits one server applies to each of its streams.
  struct Limits: Sendable {
    var maxMessageBytes: Int
    var requestIdleTimeout: TimeAmount
    var deadlineGrace: TimeAmount = .milliseconds(50)
  }

  private let limits: Limits
  private var sizes = MessageSizes()
  private var sawRequestHeaders = false
  private var requestEnded = false
  private var responseStarted = false
  private var answered = false
  private var deadline: Scheduled<Void>?
  private var idle: Scheduled<Void>?

  init(limits: Limits) { self.limits = limits }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !answered else { return }
    let payload = unwrapInboundIn(data)
    switch payload {
    case .headers(let headers):
      if !sawRequestHeaders {
        sawRequestHeaders = true
        switch GRPCTimeoutHeader.parse(headers.headers["grpc-timeout"]) {
        case .malformed:
          return answer(context, code: 3, message: "malformed grpc-timeout header")
        case .timeout(let amount):
          let loop = context.eventLoop
          let handler = NIOLoopBound(self, eventLoop: loop)
          let bound = NIOLoopBound(context, eventLoop: loop)
          deadline = loop.scheduleTask(in: amount + limits.deadlineGrace) {
            handler.value.answer(bound.value, code: 4, message: "deadline exceeded")
          }
        case .none:
          break
        }
      }
      if headers.endStream { requestEnded = true }
    case .data(let frame):
      if case .byteBuffer(let buffer) = frame.data, let size = sizes.oversized(in: buffer, limit: limits.maxMessageBytes) {
        return answer(
          context, code: 8,
          message: "request message of \(size) bytes exceeds the limit of \(limits.maxMessageBytes) bytes")
      }
      if frame.endStream { requestEnded = true }
    default:
      break
    }
    cancelIdleTimer()
    context.fireChannelRead(data)
  }

  /// The idle clock runs only while gRPC asks for more of the request: a handler still working through
  /// what it has (a long import whose client waits on flow control) is not a client that went quiet.
  func read(context: ChannelHandlerContext) {
    if idle == nil { armIdleTimer(context) }
    context.read()
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    switch unwrapOutboundIn(data) {
    case .headers(let headers):
      responseStarted = true
      if headers.endStream { responseEnded() }
    case .data(let frame):
      if frame.endStream { responseEnded() }
    default:
      break
    }
    context.write(data, promise: promise)
  }

  func channelInactive(context: ChannelHandlerContext) {
    cancelTimers()
    context.fireChannelInactive()
  }

  func handlerRemoved(context: ChannelHandlerContext) { cancelTimers() }

  private func cancelIdleTimer() {
    idle?.cancel()
    idle = nil
  }

  private func armIdleTimer(_ context: ChannelHandlerContext) {
    cancelIdleTimer()
    guard !requestEnded, !answered else { return }
    let loop = context.eventLoop
    let handler = NIOLoopBound(self, eventLoop: loop)
    let bound = NIOLoopBound(context, eventLoop: loop)
    let milliseconds = limits.requestIdleTimeout.nanoseconds / 1_000_000
    let seconds = milliseconds % 1_000 == 0 ? "\(milliseconds / 1_000) s" : "\(milliseconds) ms"
    idle = loop.scheduleTask(in: limits.requestIdleTimeout) {
      handler.value.answer(bound.value, code: 4, message: "request not completed: nothing received for \(seconds)")
    }
  }

  private func responseEnded() {
    answered = true
    cancelTimers()
  }

  private func cancelTimers() {
    deadline?.cancel()
    idle?.cancel()
    deadline = nil
    idle = nil
  }

  /// Ends the stream with a gRPC status: trailers-only if no response was started, else trailers.
  private func answer(_ context: ChannelHandlerContext, code: Int, message: String) {
    guard !answered else { return }
    answered = true
    cancelTimers()
    var headers = HPACKHeaders()
    if !responseStarted {
      headers.add(name: ":status", value: "200")
      headers.add(name: "content-type", value: "application/grpc")
    }
    headers.add(name: "grpc-status", value: String(code))
    headers.add(name: "grpc-message", value: message)
    context.write(wrapOutboundOut(.headers(.init(headers: headers, endStream: true))), promise: nil)
    // Tell a client still sending to stop; NO_ERROR after the trailers keeps their status (a CANCEL reset
    // made grpcio report CANCELLED instead of the status it had just received).
    if !requestEnded { context.write(wrapOutboundOut(.rstStream(.noError)), promise: nil) }
    context.flush()
    context.close(promise: nil)
  }
}

/// The `grpc-timeout` request header, parsed strictly: `TimeoutValue TimeoutUnit` where the value is 1–8
/// ASCII digits and the unit one of `H M S m u n` (gRPC over HTTP/2, "Requests").
enum GRPCTimeoutHeader: Equatable {
  case none
  case timeout(TimeAmount)
  case malformed

  static func parse(_ values: [String]) -> GRPCTimeoutHeader {
    guard let value = values.first else { return .none }
    guard values.count == 1 else { return .malformed }
    return parse(value)
  }

  static func parse<S: StringProtocol>(_ value: S) -> GRPCTimeoutHeader {
    let bytes = Array(value.utf8)
    guard (2...9).contains(bytes.count), let unit = bytes.last else { return .malformed }
    var amount: Int64 = 0
    for byte in bytes.dropLast() {
      guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return .malformed }
      amount = amount * 10 + Int64(byte - UInt8(ascii: "0"))
    }
    switch unit {
    case UInt8(ascii: "H"): return .timeout(.hours(amount))
    case UInt8(ascii: "M"): return .timeout(.minutes(amount))
    case UInt8(ascii: "S"): return .timeout(.seconds(amount))
    case UInt8(ascii: "m"): return .timeout(.milliseconds(amount))
    case UInt8(ascii: "u"): return .timeout(.microseconds(amount))
    case UInt8(ascii: "n"): return .timeout(.nanoseconds(amount))
    default: return .malformed
    }
  }
}

/// Follows gRPC's length-prefixed framing (1 flag byte, 4-byte big-endian length, payload) across DATA
/// frames, so a message's declared size is known from its first 5 bytes.
struct MessageSizes {
  private var prefix: [UInt8] = []
  private var remaining = 0

  /// The declared size of the first message starting in `buffer` that is larger than `limit`, if any.
  mutating func oversized(in buffer: ByteBuffer, limit: Int) -> Int? {
    var buffer = buffer
    while buffer.readableBytes > 0 {
      if remaining > 0 {
        let skip = min(remaining, buffer.readableBytes)
        buffer.moveReaderIndex(forwardBy: skip)
        remaining -= skip
        continue
      }
      prefix.append(buffer.readInteger(as: UInt8.self)!)
      guard prefix.count == 5 else { continue }
      let length = prefix[1...4].reduce(0) { $0 << 8 | Int($1) }
      prefix.removeAll(keepingCapacity: true)
      if length > limit { return length }
      remaining = length
    }
    return nil
  }
}
