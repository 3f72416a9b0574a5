import Crypto
import Foundation
import Glibc
import RapportCore
import SwiftASN1
import X509

/// A private certificate authority for one Rapport installation: `rapport certs` and `rapport up --tls`
/// write its certificate and one certificate per service (and for `operator`, the CLI) into a folder,
/// in the layout `TLSFiles(directory:name:)` reads. Keys are P-256; the CA's key stays in the folder so
/// that renewed certificates can be issued later (keep it offline in production).
public struct CertificateAuthority: Sendable {
  public let certificate: Certificate
  let key: P256.Signing.PrivateKey

  /// A new CA named `name`, valid for `days`.
  public init(name: String = "Rapport CA", days: Int = 365) throws {
    let key = P256.Signing.PrivateKey()
    let subject = try DistinguishedName { CommonName(name) }
    let now = Date()
    self.key = key
    self.certificate = try Certificate(
      version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 300,
      notValidAfter: now + Double(days) * 86_400, issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
      extensions: try Certificate.Extensions {
        Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
        Critical(KeyUsage(keyCertSign: true, cRLSign: true))
      },
      issuerPrivateKey: .init(key))
  }

  /// Reads a CA that `write(to:)` stored.
  public init(directory: String) throws {
    certificate = try Certificate(pemEncoded: String(contentsOfFile: "\(directory)/ca.pem", encoding: .utf8))
    key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: "\(directory)/ca.key", encoding: .utf8))
  }

  /// A certificate and key for `name` (its common name: the caller name `CallerPolicy` checks), usable as
  /// server and client, valid for `localhost`, 127.0.0.1, `name` and `hosts` (DNS names or IP addresses).
  public func issue(_ name: String, hosts: [String] = [], days: Int = 90) throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
    let key = P256.Signing.PrivateKey()
    let now = Date()
    var names: [GeneralName] = [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])), .dnsName(name)]
    for host in hosts {
      if let octets = HostPort.ipv4Octets(host) { names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(octets)))) }
      else { names.append(.dnsName(host)) }
    }
    let alternativeNames = SubjectAlternativeNames(names)
    let certificate = try Certificate(
      version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 300,
      notValidAfter: now + Double(days) * 86_400, issuer: self.certificate.subject,
      subject: try DistinguishedName { CommonName(name) }, signatureAlgorithm: .ecdsaWithSHA256,
      extensions: try Certificate.Extensions {
        Critical(BasicConstraints.notCertificateAuthority)
        Critical(KeyUsage(digitalSignature: true))
        try ExtendedKeyUsage([.serverAuth, .clientAuth])
        alternativeNames
      },
      issuerPrivateKey: .init(self.key))
    return (certificate, key)
  }

  /// Writes `ca.pem` and `ca.key` into `directory` (created if needed; keys mode 0600).
  public func write(to directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try Self.store(certificate.serializeAsPEM().pemString, to: "\(directory)/ca.pem", mode: 0o644)
    try Self.store(key.pemRepresentation, to: "\(directory)/ca.key", mode: 0o600)
  }

  /// Issues a certificate for `name` and writes `<name>.pem` and `<name>.key` into `directory`.
  @discardableResult
  public func writeIssued(_ name: String, hosts: [String] = [], to directory: String) throws -> TLSFiles {
    let (certificate, key) = try issue(name, hosts: hosts)
    let files = TLSFiles(directory: directory, name: name)
    try Self.store(certificate.serializeAsPEM().pemString, to: files.certificate + ".partial", mode: 0o644)
    try Self.store(key.pemRepresentation, to: files.privateKey + ".partial", mode: 0o600)
    // Key first, then certificate: a reload between the two renames sees a mismatch and keeps the old
    // pair; a reload after both sees the new pair.
    for path in [files.privateKey, files.certificate] {
      guard rename(path + ".partial", path) == 0 else { throw ShellError(description: "cannot write \(path)") }
    }
    return files
  }

  /// A CA plus certificates for the five services and `operator`, written into `directory`.
  @discardableResult
  public static func suite(in directory: String, hosts: [String] = []) throws -> CertificateAuthority {
    let authority = try CertificateAuthority()
    try authority.write(to: directory)
    for name in Stack.order + [CallerPolicy.Caller.operator] { try authority.writeIssued(name, hosts: hosts, to: directory) }
    return authority
  }

  static func store(_ text: String, to path: String, mode: mode_t) throws {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
    guard descriptor >= 0 else { throw ShellError(description: "cannot write \(path)") }
    defer { close(descriptor) }
    let data = Array((text.hasSuffix("\n") ? text : text + "\n").utf8)
    guard data.withUnsafeBytes({ Glibc.write(descriptor, $0.baseAddress, $0.count) }) == data.count else {
      throw ShellError(description: "cannot write \(path)")
    }
  }
}
