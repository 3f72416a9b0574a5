import Foundation
import RapportProtos

/// A rule segment's condition (docs/ANALYTICS.md, "Rule segments"): comparisons of a customer's metrics,
/// RFM segment, predictions, consent, tags and attributes, joined with `and`, `or`, `not` and
/// parentheses, e.g. `spent(EUR, 90) > 20000 and consented(marketing_email)`.
indirect enum SegmentRule: Sendable, Equatable {
  case all([SegmentRule])
  case any([SegmentRule])
  case not(SegmentRule)
  case compare(Value, Operator, Literal)
  case consented(purpose: Rapport_Customer_V1_ConsentPurpose, channel: Rapport_Common_V1_Channel)
  /// The customer has the tag (lower case).
  case tagged(String)

  enum Operator: String, Sendable, CaseIterable {
    case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">=", equal = "=", notEqual = "!="
  }

  enum Literal: Sendable, Equatable {
    case number(Double)
    case text(String)
    case boolean(Bool)
  }

  /// What a comparison reads about a customer.
  enum Value: Sendable, Hashable {
    case orders, cancelledOrders, daysSinceLastOrder, daysSinceFirstOrder
    case ticketsOpened, slaBreaches, averageRating
    case churnProbability, probabilityAlive, expectedPurchases
    case rfmSegment
    /// Net revenue in a currency (minor units).
    case netRevenue(String)
    /// Net spend of orders placed in the last `days` days, in a currency (minor units).
    case spent(String, days: Int)
    /// 12-month CLV in a currency (minor units).
    case clv(String)
    /// A custom attribute of the profile, by key.
    case attribute(String)

    static let plain: [String: Value] = [
      "orders": .orders, "cancelled_orders": .cancelledOrders, "days_since_last_order": .daysSinceLastOrder,
      "days_since_first_order": .daysSinceFirstOrder, "tickets_opened": .ticketsOpened, "sla_breaches": .slaBreaches,
      "average_rating": .averageRating, "churn_probability": .churnProbability, "probability_alive": .probabilityAlive,
      "expected_purchases_12m": .expectedPurchases, "rfm_segment": .rfmSegment,
    ]
  }

  /// RFM segment names as rules write them.
  static let segmentNames: [String: Rapport_Analytics_V1_RfmSegment] = [
    "champions": .champions, "loyal": .loyal, "potential_loyalist": .potentialLoyalist, "new": .new,
    "promising": .promising, "needs_attention": .needsAttention, "at_risk": .atRisk, "cant_lose_them": .cantLoseThem,
    "hibernating": .hibernating, "lost": .lost,
  ]

  static let purposes: [String: Rapport_Customer_V1_ConsentPurpose] = [
    "marketing_email": .marketingEmail, "marketing_sms": .marketingSms, "profiling": .profiling,
    "marketing_push": .marketingPush,
  ]

  static let channels: [String: Rapport_Common_V1_Channel] = [
    "web": .web, "mobile": .mobile, "store": .store, "marketplace": .marketplace, "b2b": .b2B, "email": .email,
    "phone": .phone, "chat": .chat,
  ]

  /// Every value the rule reads.
  var values: Set<Value> {
    switch self {
    case .all(let rules), .any(let rules): rules.reduce(into: []) { $0.formUnion($1.values) }
    case .not(let rule): rule.values
    case .compare(let value, _, _): [value]
    case .consented, .tagged: []
    }
  }

  /// Whether a leaf of the rule (a comparison or a condition) satisfies `leaf`.
  func contains(_ leaf: (SegmentRule) -> Bool) -> Bool {
    switch self {
    case .all(let rules), .any(let rules): rules.contains { $0.contains(leaf) }
    case .not(let rule): rule.contains(leaf)
    case .compare, .consented, .tagged: leaf(self)
    }
  }

  var readsConsent: Bool { contains { if case .consented = $0 { true } else { false } } }

  var readsTags: Bool { contains { if case .tagged = $0 { true } else { false } } }

  /// Whether a customer with `facts` matches. A comparison with a value the customer does not have (no
  /// order yet, no model fitted) is false.
  func matches(_ facts: SegmentFacts) -> Bool {
    switch self {
    case .all(let rules): return rules.allSatisfy { $0.matches(facts) }
    case .any(let rules): return rules.contains { $0.matches(facts) }
    case .not(let rule): return !rule.matches(facts)
    case .consented(let purpose, let channel): return facts.consented(purpose, channel)
    case .tagged(let tag): return facts.tags.contains(tag)
    case .compare(let value, let op, let literal):
      switch (facts.values[value], literal) {
      case (.number(let have)?, .number(let want)):
        switch op {
        case .less: return have < want
        case .lessOrEqual: return have <= want
        case .greater: return have > want
        case .greaterOrEqual: return have >= want
        case .equal: return have == want
        case .notEqual: return have != want
        }
      case (.text(let have)?, .text(let want)):
        return op == .equal ? have == want : have != want
      case (.boolean(let have)?, .boolean(let want)):
        return op == .equal ? have == want : have != want
      default: return false
      }
    }
  }
}

/// What rules read about one customer.
struct SegmentFacts: Sendable {
  var values: [SegmentRule.Value: SegmentRule.Literal] = [:]
  /// (purpose, channel) → granted; channel unspecified is the decision for every channel.
  var consent: [SegmentConsentKey: Bool] = [:]
  /// The profile's tags.
  var tags: Set<String> = []

  /// The decision for the channel, else the one for every channel; no decision is no consent.
  func consented(_ purpose: Rapport_Customer_V1_ConsentPurpose, _ channel: Rapport_Common_V1_Channel) -> Bool {
    if channel != .unspecified, let decided = consent[.init(purpose: purpose.rawValue, channel: channel.rawValue)] {
      return decided
    }
    return consent[.init(purpose: purpose.rawValue, channel: 0)] ?? false
  }
}

struct SegmentConsentKey: Hashable, Sendable {
  let purpose: Int
  let channel: Int
}

/// A rule that does not parse: the offending token and its position (1-based, in characters).
struct SegmentRuleError: Error, Equatable, CustomStringConvertible {
  let position: Int
  let token: String
  let reason: String
  var description: String {
    token.isEmpty ? "\(reason) at the end (position \(position))" : "\(reason): '\(token)' at position \(position)"
  }
}

extension SegmentRule {
  /// Parses the rule language (docs/ANALYTICS.md): at most 2,000 characters and 100 comparisons.
  static func parse(_ text: String) throws -> SegmentRule {
    var parser = try Parser(text)
    let rule = try parser.expression()
    guard parser.peek == nil else { throw parser.error("expected 'and', 'or' or the end") }
    guard parser.comparisons <= 100 else { throw SegmentRuleError(position: 1, token: "", reason: "more than 100 comparisons") }
    return rule
  }

  private struct Token: Equatable {
    enum Kind: Equatable { case word, number, text, symbol }
    let kind: Kind
    let text: String
    let position: Int
  }

  private struct Parser {
    var tokens: [Token] = []
    var index = 0
    var end: Int
    var comparisons = 0

    init(_ source: String) throws {
      let characters = Array(source)
      end = characters.count + 1
      guard characters.count <= 2_000 else { throw SegmentRuleError(position: 2_001, token: "", reason: "longer than 2000 characters") }
      var i = 0
      while i < characters.count {
        let c = characters[i]
        let start = i
        if c.isWhitespace {
          i += 1
        } else if c.isLetter || c == "_" {
          while i < characters.count, characters[i].isLetter || characters[i].isNumber || characters[i] == "_" { i += 1 }
          tokens.append(Token(kind: .word, text: String(characters[start..<i]).lowercased(), position: start + 1))
        } else if c.isNumber || (c == "-" && i + 1 < characters.count && characters[i + 1].isNumber) || c == "." {
          i += 1
          while i < characters.count, characters[i].isNumber || characters[i] == "." { i += 1 }
          let text = String(characters[start..<i])
          guard Double(text) != nil else { throw SegmentRuleError(position: start + 1, token: text, reason: "not a number") }
          tokens.append(Token(kind: .number, text: text, position: start + 1))
        } else if c == "\"" || c == "'" {
          i += 1
          while i < characters.count, characters[i] != c { i += 1 }
          guard i < characters.count else {
            throw SegmentRuleError(position: start + 1, token: String(characters[start...].prefix(20)), reason: "unterminated string")
          }
          tokens.append(Token(kind: .text, text: String(characters[(start + 1)..<i]), position: start + 1))
          i += 1
        } else if "<>=!".contains(c) {
          i += 1
          if i < characters.count, characters[i] == "=" { i += 1 }
          let text = String(characters[start..<i])
          guard Operator(rawValue: text) != nil else { throw SegmentRuleError(position: start + 1, token: text, reason: "unknown operator") }
          tokens.append(Token(kind: .symbol, text: text, position: start + 1))
        } else if "(),".contains(c) {
          i += 1
          tokens.append(Token(kind: .symbol, text: String(c), position: start + 1))
        } else {
          throw SegmentRuleError(position: start + 1, token: String(c), reason: "unexpected character")
        }
      }
    }

    var peek: Token? { index < tokens.count ? tokens[index] : nil }

    func error(_ reason: String) -> SegmentRuleError {
      SegmentRuleError(position: peek?.position ?? end, token: peek?.text ?? "", reason: reason)
    }

    mutating func next() -> Token? {
      defer { index += 1 }
      return peek
    }

    mutating func take(_ text: String) -> Bool {
      guard peek?.text == text, peek?.kind != .text else { return false }
      index += 1
      return true
    }

    mutating func expect(_ text: String) throws {
      guard take(text) else { throw error("expected '\(text)'") }
    }

    mutating func expression() throws -> SegmentRule {
      var terms = [try conjunction()]
      while take("or") { terms.append(try conjunction()) }
      return terms.count == 1 ? terms[0] : .any(terms)
    }

    mutating func conjunction() throws -> SegmentRule {
      var terms = [try negation()]
      while take("and") { terms.append(try negation()) }
      return terms.count == 1 ? terms[0] : .all(terms)
    }

    mutating func negation() throws -> SegmentRule {
      if take("not") { return .not(try negation()) }
      if take("(") {
        let inner = try expression()
        try expect(")")
        return inner
      }
      return try comparison()
    }

    mutating func word(_ what: String) throws -> String {
      guard let token = peek, token.kind == .word else { throw error("expected \(what)") }
      index += 1
      return token.text
    }

    mutating func currency() throws -> String {
      guard let token = peek, token.kind == .word, token.text.count == 3 else { throw error("expected a currency code") }
      index += 1
      return token.text.uppercased()
    }

    mutating func comparison() throws -> SegmentRule {
      guard let name = peek, name.kind == .word else { throw error("expected a value, 'not' or '('") }
      index += 1
      let value: Value
      switch name.text {
      case "consented":
        try expect("(")
        guard let purpose = SegmentRule.purposes[try word("a consent purpose")] else {
          index -= 1
          throw error("unknown consent purpose (\(SegmentRule.purposes.keys.sorted().joined(separator: ", ")))")
        }
        var channel = Rapport_Common_V1_Channel.unspecified
        if take(",") {
          guard let named = SegmentRule.channels[try word("a channel")] else {
            index -= 1
            throw error("unknown channel")
          }
          channel = named
        }
        try expect(")")
        comparisons += 1
        return .consented(purpose: purpose, channel: channel)
      case "tagged":
        try expect("(")
        let tag = try quotedName(
          "a tag (1–64 letters, digits, '-', '_', ':')",
          valid: { !$0.isEmpty && $0.count <= 64 && $0.allSatisfy { $0.isLetter || $0.isNumber || "-_:".contains($0) } })
          .lowercased()
        try expect(")")
        comparisons += 1
        return .tagged(tag)
      case "attribute":
        try expect("(")
        value = .attribute(try quotedName(
          "an attribute key (1–64 letters, digits, '_', '.')",
          valid: { !$0.isEmpty && $0.count <= 64 && $0.allSatisfy { $0.isLetter || $0.isNumber || "_.".contains($0) } }))
        try expect(")")
      case "net_revenue", "clv":
        try expect("(")
        let code = try currency()
        try expect(")")
        value = name.text == "clv" ? .clv(code) : .netRevenue(code)
      case "spent":
        try expect("(")
        let code = try currency()
        try expect(",")
        guard let days = peek.flatMap({ $0.kind == .number ? Int($0.text) : nil }), (1...3_660).contains(days) else {
          throw error("expected a number of days from 1 to 3660")
        }
        index += 1
        try expect(")")
        value = .spent(code, days: days)
      default:
        guard let plain = Value.plain[name.text] else {
          index -= 1
          throw error("unknown value")
        }
        value = plain
      }
      guard let symbol = peek, symbol.kind == .symbol, let op = Operator(rawValue: symbol.text) else {
        throw error("expected a comparison (<, <=, >, >=, =, !=)")
      }
      index += 1
      guard let literal = next() else { index -= 1; throw error("expected a number or a quoted name") }
      comparisons += 1
      if value == .rfmSegment {
        guard literal.kind == .text || literal.kind == .word, SegmentRule.segmentNames[literal.text.lowercased()] != nil else {
          index -= 1
          throw error("expected an RFM segment name (\(SegmentRule.segmentNames.keys.sorted().joined(separator: ", ")))")
        }
        guard op == .equal || op == .notEqual else {
          index -= 2
          throw error("RFM segments compare only with = or !=")
        }
        return .compare(value, op, .text(literal.text.lowercased()))
      }
      if case .attribute = value {
        if literal.kind == .number, let number = Double(literal.text) { return .compare(value, op, .number(number)) }
        let boolean = literal.kind == .word ? ["true": true, "false": false][literal.text] : nil
        guard literal.kind == .text || boolean != nil else {
          index -= 1
          throw error("expected a number, a quoted text, true or false")
        }
        guard op == .equal || op == .notEqual else {
          index -= 2
          throw error("text, true and false compare only with = or !=")
        }
        return .compare(value, op, boolean.map { .boolean($0) } ?? .text(literal.text))
      }
      guard literal.kind == .number, let number = Double(literal.text) else {
        index -= 1
        throw error("expected a number")
      }
      return .compare(value, op, .number(number))
    }

    /// A quoted name (or a bare word) that `valid` accepts.
    mutating func quotedName(_ what: String, valid: (String) -> Bool) throws -> String {
      guard let token = peek, token.kind == .text || token.kind == .word, valid(token.text) else {
        throw error("expected \(what)")
      }
      index += 1
      return token.text
    }
  }
}
