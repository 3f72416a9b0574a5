import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCertificateReloading
import ServiceLifecycle
import UnixSignals

/// A process's TLS material: its own certificate and key (PEM files) and the CA that signs its peers'.
/// With it, a service's listener speaks TLS and its outbound calls present its certificate (mutual TLS
/// inside the suite); without it, both are plaintext, which is for development only.
public struct TLSFiles: Sendable, Equatable {
  /// PEM certificate chain, leaf first.
  public var certificate: String
  /// PEM private key of the leaf.
  public var privateKey: String
  /// PEM certificate(s) of the CA that signs the other services' certificates.
  public var trustRoots: String

  public init(certificate: String, privateKey: String, trustRoots: String) {
    (self.certificate, self.privateKey, self.trustRoots) = (certificate, privateKey, trustRoots)
  }

  /// The files `rapport certs` writes for `name` in `directory`.
  public init(directory: String, name: String) {
    self.init(
      certificate: "\(directory)/\(name).pem", privateKey: "\(directory)/\(name).key", trustRoots: "\(directory)/ca.pem")
  }
}

/// The process's certificate and key, re-read from their files every `interval` and on SIGHUP, so a
/// renewed certificate is served to new connections without a restart (open connections keep theirs).
/// A renewal that does not load (missing file, key not matching the certificate) is logged and the
/// previous pair stays in use.
public final class CertificateReload: Service, Sendable {
  public let reloader: TimedCertificateReloader
  let logger: Logger

  public init(files: TLSFiles, interval: Duration, logger: Logger) throws {
    self.logger = logger
    let configuration = TimedCertificateReloader.Configuration(
      refreshInterval: interval,
      certificateSource: .init(location: .file(path: files.certificate), format: .pem),
      privateKeySource: .init(location: .file(path: files.privateKey), format: .pem)
    ) {
      $0.onCertificateLoadFailed = { failure in
        logger.error("certificate reload failed; keeping the previous one", metadata: ["error": "\(failure.error)"])
      }
    }
    do {
      self.reloader = try TimedCertificateReloader.makeReloaderValidatingSources(configuration: configuration)
    } catch {
      throw ConfigurationError("cannot load the TLS certificate \(files.certificate) and key \(files.privateKey): \(error)")
    }
  }

  public func run() async throws {
    let reloader = self.reloader
    let logger = self.logger
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await reloader.run() }
      group.addTask {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
          do {
            try reloader.reload()
            logger.notice("certificate reloaded (SIGHUP)")
          } catch {
            logger.error("certificate reload failed; keeping the previous one", metadata: ["error": "\(error)"])
          }
        }
      }
    }
  }
}

/// A process's TLS, built once at start: the listener's security, the outbound calls' security (both
/// from the same reloaded certificate), and whether peers must present a certificate.
public struct ProcessTLS: Sendable {
  public let files: TLSFiles
  /// Peers must present a certificate signed by `files.trustRoots` (internal services); the gateway's
  /// partner listener does not ask (partners authenticate with keys).
  public let verifyClients: Bool
  public let reload: CertificateReload
  public let server: HTTP2ServerTransport.Posix.TransportSecurity
  public let client: HTTP2ClientTransport.Posix.TransportSecurity

  public init(files: TLSFiles, verifyClients: Bool, reloadInterval: Duration, logger: Logger) throws {
    self.files = files
    self.verifyClients = verifyClients
    let reload = try CertificateReload(files: files, interval: reloadInterval, logger: logger)
    self.reload = reload
    self.server = try .tls(certificateReloader: reload.reloader) {
      if verifyClients {
        $0.clientCertificateVerification = .noHostnameVerification
        $0.trustRoots = .certificates([.file(path: files.trustRoots, format: .pem)])
      }
    }
    self.client = try .mTLS(certificateReloader: reload.reloader) {
      $0.trustRoots = .certificates([.file(path: files.trustRoots, format: .pem)])
    }
  }
}
