import Foundation
import GRPCProtobuf
import RapportProtos
import SwiftProtobuf
/// Request validation helpers; each throws INVALID_ARGUMENT naming the field.
public enum Validate {
  /// A required UUID string; returns it parsed.
  public static func uuid(_ value: String, field: String) throws -> UUID {
    guard !value.isEmpty else { throw RPCFailure.invalid(field, "is required") }
    guard let id = UUID(uuidString: value) else { throw RPCFailure.invalid(field, "must be a UUID") }
    return id
  }

  /// A required list of 1...max UUIDs (`customer_ids` of a batch read); a malformed one is named by its
  /// index, e.g. `customer_ids[3]`.
  public static func uuids(_ values: [String], field: String, max: Int = 100) throws -> [UUID] {
    guard !values.isEmpty else { throw RPCFailure.invalid(field, "is required") }
    guard values.count <= max else { throw RPCFailure.invalid(field, "must hold at most \(max) ids") }
    return try values.enumerated().map { try uuid($1, field: "\(field)[\($0)]") }
  }

  /// A required string of 1...max characters (after trimming white space); returns it trimmed.
  public static func required(_ value: String, field: String, max: Int) throws -> String {
    let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty else { throw RPCFailure.invalid(field, "is required") }
    return try optional(trimmed, field: field, max: max)
  }

  /// An optional string of at most `max` characters; returns it trimmed.
  public static func optional(_ value: String, field: String, max: Int) throws -> String {
    let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
    guard trimmed.count <= max else { throw RPCFailure.invalid(field, "must be at most \(max) characters") }
    return trimmed
  }

  /// At most `max` tags; returns them lower-case, deduplicated and sorted.
  public static func tags(_ tags: [String], field: String, max: Int) throws -> [String] {
    guard tags.count <= max else { throw RPCFailure.invalid(field, "at most \(max) tags") }
    let normalised = try tags.map { try tag($0, field: field) }
    return Array(Set(normalised)).sorted()
  }

  /// One tag: 1–64 characters of letters, digits, "-", "_", ":"; returns it trimmed and lower-case.
  public static func tag(_ raw: String, field: String) throws -> String {
    let tag = raw.trimmingCharacters(in: .whitespaces).lowercased()
    guard (1...64).contains(tag.count),
      tag.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_:".contains($0)) })
    else { throw RPCFailure.invalid(field, "tags are 1-64 characters of letters, digits, - _ :") }
    return tag
  }

  /// A required email address; returns it normalised (trimmed, lower-case).
  public static func email(_ value: String, field: String = "email") throws -> String {
    let email = try required(value, field: field, max: 254).lowercased()
    let parts = email.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."),
      !parts[1].hasSuffix("."), !email.contains(where: { $0.isWhitespace })
    else { throw RPCFailure.invalid(field, "must be an email address") }
    return email
  }

  /// A required ISO-4217 currency code; returns it.
  public static func currency(_ value: String, field: String = "currency") throws -> String {
    guard !value.isEmpty else { throw RPCFailure.invalid(field, "is required") }
    guard ISO4217.codes.contains(value) else {
      throw RPCFailure.invalid(field, "must be an ISO-4217 currency code such as EUR")
    }
    return value
  }

  /// A required ISO-3166-1 alpha-2 country code, upper case; returns it.
  public static func country(_ value: String, field: String) throws -> String {
    guard ISO3166.codes.contains(value) else {
      throw RPCFailure.invalid(field, "must be an ISO-3166-1 alpha-2 code such as DE")
    }
    return value
  }

  /// A known enum value other than the zero `…_UNSPECIFIED`.
  public static func specified<E: SwiftProtobuf.Enum & CaseIterable>(_ value: E, field: String) throws -> E {
    guard value.rawValue != 0 else { throw RPCFailure.invalid(field, "is required") }
    return try known(value, field: field)
  }

  /// A known enum value, the zero value allowed.
  public static func known<E: SwiftProtobuf.Enum & CaseIterable>(_ value: E, field: String) throws -> E {
    guard E.allCases.contains(where: { $0.rawValue == value.rawValue }) else {
      throw RPCFailure.invalid(field, "has an unknown value \(value.rawValue)")
    }
    return value
  }

  /// A page size: 0 means `default`, otherwise 1...max.
  public static func pageSize(_ value: Int32, field: String = "page_size", default fallback: Int = 20, max: Int = 100) throws -> Int {
    if value == 0 { return fallback }
    guard value > 0, value <= max else { throw RPCFailure.invalid(field, "must be between 1 and \(max)") }
    return Int(value)
  }
}


extension Validate {
  /// A required, non-empty field mask whose paths are all in `allowed`; returns the paths, deduplicated.
  public static func mask(
    _ mask: Google_Protobuf_FieldMask, allowed: Set<String>, field: String = "update_mask"
  ) throws -> [String] {
    guard !mask.paths.isEmpty else { throw RPCFailure.invalid(field, "must name at least one field") }
    if let unknown = mask.paths.first(where: { !allowed.contains($0) }) {
      throw RPCFailure.invalid(field, "cannot update '\(unknown)'; allowed: \(allowed.sorted().joined(separator: ", "))")
    }
    var seen = Set<String>()
    return mask.paths.filter { seen.insert($0).inserted }
  }

  /// The mask's paths as `Path` cases (one case per updatable path, so a switch over them needs no
  /// `default:`), duplicates dropped; INVALID_ARGUMENT naming the allowed paths for any other.
  public static func mask<Path: RawRepresentable & CaseIterable>(
    _ mask: Google_Protobuf_FieldMask, as _: Path.Type, field: String = "update_mask"
  ) throws -> [Path] where Path.RawValue == String {
    try self.mask(mask, allowed: Set(Path.allCases.map(\.rawValue)), field: field).compactMap(Path.init(rawValue:))
  }

  /// A required positive version a client read before changing a record.
  public static func version(_ value: Int64, field: String = "expected_version") throws -> Int64 {
    guard value > 0 else { throw RPCFailure.invalid(field, "is required: the version you read") }
    return value
  }

  /// An optional time: unset means `nil`; set must be a valid timestamp.
  public static func time(_ value: Google_Protobuf_Timestamp, isSet: Bool, field: String) throws -> Date? {
    guard isSet else { return nil }
    // The range of google.protobuf.Timestamp: 0001-01-01 to 9999-12-31, nanos within a second.
    guard (-62_135_596_800...253_402_300_799).contains(value.seconds), (0..<1_000_000_000).contains(value.nanos)
    else { throw RPCFailure.invalid(field, "is not a valid timestamp") }
    return value.date
  }
}
