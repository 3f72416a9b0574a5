import ArgumentParser
import Foundation
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal

/// How the CLI connects to a suite: plaintext, or mutual TLS as `operator` with the certificates of
/// `rapport certs` (or of `rapport up --tls`, in `<data-dir>/tls`).
struct ClientTLS: ParsableArguments {
  @Option(
    name: .customLong("tls-dir"),
    help: "Folder with ca.pem, operator.pem and operator.key: connect with mutual TLS (default: $RAPPORT_TLS_DIR, else plaintext).")
  var directory: String?

  var security: HTTP2ClientTransport.Posix.TransportSecurity {
    Stack.clientSecurity(directory ?? ProcessInfo.processInfo.environment["RAPPORT_TLS_DIR"])
  }
}

/// `rapport certs`: a private CA and a certificate per service and for the CLI.
struct Certs: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Create a CA and TLS certificates for the five services and the operator CLI.",
    discussion: """
      Writes ca.pem and ca.key (the CA; keep ca.key offline), and <name>.pem and <name>.key for customer, \
      order, support, analytics, gateway and operator. A service's certificate's common name is the caller \
      name the other services' allow-lists check. Pass --host for every DNS name or IP address the services \
      are reached by besides localhost and 127.0.0.1 (e.g. Kubernetes service names). With an existing CA in \
      the folder, only the named certificates are re-issued (renewal; the services pick them up on SIGHUP or \
      within their reload interval).
      """)

  @Argument(help: "Output folder.")
  var directory: String

  @Option(help: "Another DNS name or IP address to put in every certificate (repeatable).")
  var host: [String] = []

  @Option(help: "Re-issue only this certificate with the CA already in the folder (repeatable).")
  var renew: [String] = []

  func run() throws {
    if renew.isEmpty {
      try CertificateAuthority.suite(in: directory, hosts: host)
      print("CA and certificates for \((Stack.order + [CallerPolicy.Caller.operator]).joined(separator: ", ")) in \(directory)")
    } else {
      let authority = try CertificateAuthority(directory: directory)
      for name in renew { try authority.writeIssued(name, hosts: host, to: directory) }
      print("re-issued \(renew.joined(separator: ", ")) in \(directory)")
    }
  }
}
