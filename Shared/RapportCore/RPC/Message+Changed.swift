import SwiftProtobuf

extension SwiftProtobuf.Message {
  /// A copy with `change` applied (`Message.with` builds from empty; this starts from `self`).
  public func changed(_ change: (inout Self) -> Void) -> Self {
    var copy = self
    change(&copy)
    return copy
  }
}
