import Crypto
import Foundation

/// An API key as a partner sends it: `rpk_<key id: 32 hex digits>_<secret: 64 hex digits>` — a
/// recognisable prefix, the key's id (so a lookup needs no scan), and 256 random bits. Rapport stores
/// only the SHA-256 of the whole key.
enum KeySecret {
  static let prefix = "rpk_"
  private static let idDigits = 32, secretDigits = 64
  static let length = prefix.count + idDigits + 1 + secretDigits

  /// A new key for `id`, from the system's cryptographically secure generator.
  static func generate(id: UUID) -> String {
    var generator = SystemRandomNumberGenerator()
    let secret = (0..<secretDigits / 16).map { _ in hex(generator.next(), digits: 16) }.joined()
    return prefix + compact(id) + "_" + secret
  }

  /// The id a presented key names, when it has exactly the key format; nil for anything else.
  static func id(of key: String) -> UUID? {
    let bytes = Array(key.utf8)
    guard bytes.count == length, key.hasPrefix(prefix), bytes[prefix.count + idDigits] == UInt8(ascii: "_") else {
      return nil
    }
    let digits = bytes[prefix.count...].filter { $0 != UInt8(ascii: "_") }
    guard digits.count == idDigits + secretDigits, digits.allSatisfy(isLowerHex) else { return nil }
    let idHex = String(decoding: bytes[prefix.count..<prefix.count + idDigits], as: UTF8.self)
    return UUID(uuidString: dashed(idHex))
  }

  /// The stored form of a key.
  static func hash(_ key: String) -> [UInt8] { Array(SHA256.hash(data: Array(key.utf8))) }

  /// Compares two hashes in time independent of where they differ.
  static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
  }

  /// What lists and logs show of a key: its prefix and id.
  static func displayPrefix(_ id: UUID) -> String { prefix + compact(id) }

  private static func compact(_ id: UUID) -> String { id.uuidString.lowercased().replacingOccurrences(of: "-", with: "") }

  private static func dashed(_ hex: String) -> String {
    let h = Array(hex)
    return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(h[$0]) }.joined(separator: "-")
  }

  private static func hex(_ value: UInt64, digits: Int) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: digits - text.count) + text
  }

  private static func isLowerHex(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
  }
}
