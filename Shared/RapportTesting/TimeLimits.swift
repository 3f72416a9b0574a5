import Testing

extension Trait where Self == TimeLimitTrait {
  /// Every suite's limit for each of its tests. The slowest takes about 2.5 minutes on a loaded 2-core
  /// machine; past 5, a test is failed by name (and cancelled) instead of hanging the run until
  /// scripts/test kills it.
  public static var hangLimit: Self { .timeLimit(.minutes(5)) }
}
