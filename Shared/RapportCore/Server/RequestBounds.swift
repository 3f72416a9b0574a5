import Foundation
import GRPCCore
import Synchronization
import SwiftProtobuf

/// Bounds every request message of every RPC before a handler sees it: no text field may hold a NUL
/// character (PostgreSQL refuses them in `text` and `jsonb`), no string or bytes field may exceed
/// `maxFieldBytes`, and no repeated or map field may hold more than `maxItems` entries. A violation is
/// INVALID_ARGUMENT naming the field (`lines[2].title`) with a `google.rpc.BadRequest` detail.
/// RPCs keep their own tighter limits; these are the floor no handler can forget.
public struct RequestBounds: ServerInterceptor {
  public var maxFieldBytes: Int
  public var maxItems: Int

  public init(maxFieldBytes: Int = 128 * 1024, maxItems: Int = 10_000) {
    self.maxFieldBytes = maxFieldBytes
    self.maxItems = maxItems
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>, context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard Input.self is any SwiftProtobuf.Message.Type else { return try await next(request, context) }
    var request = request
    let bounds = self
    request.messages = RPCAsyncSequence(
      wrapping: request.messages.map { message in
        if let message = message as? any SwiftProtobuf.Message { try bounds.check(message) }
        return message
      })
    return try await next(request, context)
  }

  /// Throws INVALID_ARGUMENT for the first field of `message` that breaks a bound.
  public func check(_ message: any SwiftProtobuf.Message) throws {
    var visitor = BoundsVisitor(bounds: self, type: type(of: message), path: [])
    do {
      try message.traverse(visitor: &visitor)
    } catch let violation as BoundsViolation {
      throw RPCFailure.invalid(violation.fieldPath, violation.reason)
    }
  }
}

/// One step of a field path: the message type, the field number and, for repeated fields, the index.
private struct PathStep {
  let type: any SwiftProtobuf.Message.Type
  let number: Int
  let index: Int?
}

private struct BoundsViolation: Error {
  let path: [PathStep]
  let reason: String

  /// `lines[2].title`: names resolved only now, on the error path.
  var fieldPath: String {
    path.map { step in
      let name = FieldNames.name(of: step.type, number: step.number)
      return step.index.map { "\(name)[\($0)]" } ?? name
    }.joined(separator: ".")
  }
}

/// Field names by number. swift-protobuf keeps its name maps internal, so the name is read once per
/// field from the text format of a message holding only that field, and cached.
private enum FieldNames {
  private static let cache = Mutex<[String: String]>([:])

  static func name(of type: any SwiftProtobuf.Message.Type, number: Int) -> String {
    let key = "\(ObjectIdentifier(type).hashValue):\(number)"
    if let name = cache.withLock({ $0[key] }) { return name }
    let name = probe(type, number) ?? "field \(number)"
    cache.withLock { $0[key] = name }
    return name
  }

  private static func probe(_ type: any SwiftProtobuf.Message.Type, _ number: Int) -> String? {
    var tag = UInt64(number) << 3 | 2
    var bytes: [UInt8] = []
    while tag >= 0x80 {
      bytes.append(UInt8(tag & 0x7f) | 0x80)
      tag >>= 7
    }
    bytes.append(UInt8(tag))
    // A length-delimited value: "x" reads as a string or bytes, an empty one as a message or map entry.
    for value: [UInt8] in [[1, UInt8(ascii: "x")], [0]] {
      guard let message = try? type.init(serializedBytes: bytes + value) else { continue }
      let text = message.textFormatString()
      let name = text.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
      if !name.isEmpty, !name.allSatisfy(\.isNumber) { return String(name) }
    }
    return nil
  }
}

private struct BoundsVisitor: SwiftProtobuf.Visitor {
  let bounds: RequestBounds
  let type: any SwiftProtobuf.Message.Type
  let path: [PathStep]

  private func step(_ number: Int, _ index: Int? = nil) -> [PathStep] {
    path + [PathStep(type: type, number: number, index: index)]
  }

  private func check(_ text: String, _ number: Int, _ index: Int? = nil) throws {
    if text.utf8.count > bounds.maxFieldBytes {
      throw BoundsViolation(path: step(number, index), reason: "must be at most \(bounds.maxFieldBytes) bytes")
    }
    if text.utf8.contains(0) {
      throw BoundsViolation(path: step(number, index), reason: "must not contain NUL characters")
    }
  }

  private func count(_ items: Int, _ number: Int) throws {
    if items > bounds.maxItems {
      throw BoundsViolation(path: step(number), reason: "must have at most \(bounds.maxItems) entries")
    }
  }

  private func nested<M: SwiftProtobuf.Message>(_ message: M, _ number: Int, _ index: Int? = nil) throws {
    var visitor = BoundsVisitor(bounds: bounds, type: M.self, path: step(number, index))
    try message.traverse(visitor: &visitor)
  }

  mutating func visitSingularStringField(value: String, fieldNumber: Int) throws { try check(value, fieldNumber) }

  mutating func visitRepeatedStringField(value: [String], fieldNumber: Int) throws {
    try count(value.count, fieldNumber)
    for (index, text) in value.enumerated() { try check(text, fieldNumber, index) }
  }

  mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {
    if value.count > bounds.maxFieldBytes {
      throw BoundsViolation(path: step(fieldNumber), reason: "must be at most \(bounds.maxFieldBytes) bytes")
    }
  }

  mutating func visitRepeatedBytesField(value: [Data], fieldNumber: Int) throws {
    try count(value.count, fieldNumber)
    for data in value { try visitSingularBytesField(value: data, fieldNumber: fieldNumber) }
  }

  mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws {
    try nested(value, fieldNumber)
  }

  mutating func visitRepeatedMessageField<M: SwiftProtobuf.Message>(value: [M], fieldNumber: Int) throws {
    try count(value.count, fieldNumber)
    for (index, message) in value.enumerated() { try nested(message, fieldNumber, index) }
  }

  mutating func visitMapField<KeyType, ValueType: MapValueType>(
    fieldType: _ProtobufMap<KeyType, ValueType>.Type, value: _ProtobufMap<KeyType, ValueType>.BaseType,
    fieldNumber: Int
  ) throws {
    try count(value.count, fieldNumber)
    for (key, item) in value {
      if let key = key as? String { try check(key, fieldNumber) }
      if let item = item as? String { try check(item, fieldNumber) }
    }
  }

  mutating func visitMapField<KeyType, ValueType>(
    fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type, value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
    fieldNumber: Int
  ) throws where ValueType.RawValue == Int {
    try count(value.count, fieldNumber)
    for key in value.keys { if let key = key as? String { try check(key, fieldNumber) } }
  }

  mutating func visitMapField<KeyType, ValueType>(
    fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type,
    value: _ProtobufMessageMap<KeyType, ValueType>.BaseType, fieldNumber: Int
  ) throws {
    try count(value.count, fieldNumber)
    for (key, item) in value {
      if let key = key as? String { try check(key, fieldNumber) }
      try nested(item, fieldNumber)
    }
  }

  // Scalars need no bounds.
  mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {}
  mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {}
  mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {}
  mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {}
  mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws {}
  mutating func visitRepeatedEnumField<E: SwiftProtobuf.Enum>(value: [E], fieldNumber: Int) throws {
    try count(value.count, fieldNumber)
  }
  mutating func visitPackedEnumField<E: SwiftProtobuf.Enum>(value: [E], fieldNumber: Int) throws {
    try count(value.count, fieldNumber)
  }
  mutating func visitUnknown(bytes: Data) throws {}
}
