/// What this binary was built from: reported by `--version` and `rapport_build_info` of every executable.
public enum BuildInfo {
  /// Rapport's release version.
  public static let version = "0.11.0"
  /// The git commit of the build (`buildCommit` is written by the BuildCommit plugin before each build).
  public static let commit = buildCommit
  /// `0.11.0 (commit 1a2b3c4d5e6f)`.
  public static let description = "\(version) (commit \(commit))"
}
