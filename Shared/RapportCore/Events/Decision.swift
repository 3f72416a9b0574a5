import RapportProtos

/// What one state-machine step decided — every service's lifecycle steps return it: the events to
/// publish with the change (in its transaction), the reason recorded in the history, and whatever else
/// the caller needs back (`Extra`; `Void` for most steps). No events means nothing changed.
public struct Decision<Extra: Sendable>: Sendable {
  public var events: [Rapport_Events_V1_Event.OneOf_Payload]
  public var reason: String
  public var extra: Extra

  public init(events: [Rapport_Events_V1_Event.OneOf_Payload] = [], reason: String = "", extra: Extra) {
    self.events = events
    self.reason = reason
    self.extra = extra
  }
}

extension Decision where Extra == Void {
  public init(events: [Rapport_Events_V1_Event.OneOf_Payload] = [], reason: String = "") {
    self.init(events: events, reason: reason, extra: ())
  }
}
