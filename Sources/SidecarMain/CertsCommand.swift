import ArgumentParser
import Foundation
import Sidecar

/// `sidecar certs`: the mesh identity issuer. Wiring only; `MeshCertificateAuthority` and friends do the work.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Issue mesh identities: a root CA and SPIFFE workload certificates for mTLS.",
        subcommands: [CA.self, Workload.self, Inspect.self])

    struct CA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ca",
            abstract: "Create the mesh root CA (ECDSA P-256, self-signed): DIR/ca.crt and DIR/ca.key (0600).")

        @Option(
            name: .customLong("out"),
            help: ArgumentHelp("Directory to write ca.crt and ca.key into.", valueName: "dir"))
        var out: String

        @Option(name: .customLong("trust-domain"), help: "SPIFFE trust domain, a lower-case DNS name (the CA's O=).")
        var trustDomain = "cluster.local"

        @Option(name: .customLong("days"), help: "Validity in days.")
        var days = 3650

        @Flag(name: .customLong("force"), help: "Replace an existing CA (certificates it issued stop verifying).")
        var force = false

        func validate() throws {
            if days < 1 { throw ValidationError("--days must be at least 1") }
        }

        func run() throws {
            try reportingErrors {
                let ca = try MeshCertificateAuthority(trustDomain: trustDomain, validity: TimeInterval(days) * 86400)
                try ca.write(toDirectory: out, overwrite: force)
                print("wrote \(path(out, MeshCertificateAuthority.certificateFile))"
                    + " and \(path(out, MeshCertificateAuthority.privateKeyFile)):"
                    + " root CA for trust domain \(trustDomain),"
                    + " valid until \(ca.certificate.notValidAfter.formatted(.iso8601))")
            }
        }
    }

    struct Workload: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "workload",
            abstract:
                "Issue (or rotate) a workload certificate for spiffe://<trust-domain>/ns/<namespace>/sa/<account>.",
            discussion: """
                Writes tls.crt (the leaf only), tls.key (0600), ca.crt (the root) and secret.yaml (a \
                kubernetes.io/tls Secret, 0600) into the --out directory, each atomically; re-running into the \
                same directory rotates the identity under a running sidecar. tls.key is replaced just before \
                tls.crt, so a new tls.crt always has its key in place.
                """)

        @Option(name: .customLong("ca"), help: ArgumentHelp("Directory holding ca.crt and ca.key.", valueName: "dir"))
        var caDirectory: String

        @Option(name: .customLong("namespace"), help: "Kubernetes namespace (a DNS-1123 label).")
        var namespace: String

        @Option(name: .customLong("service-account"), help: "Kubernetes service account (a DNS-1123 label).")
        var serviceAccount: String

        @Option(name: .customLong("trust-domain"), help: "SPIFFE trust domain (default: the CA's O=).")
        var trustDomain: String?

        @Option(
            name: .customLong("hours"), help: "Validity in hours (notBefore is back-dated 5 minutes for clock skew).")
        var hours = 24

        @Option(name: .customLong("dns"), help: ArgumentHelp("Extra DNS SAN; repeat for more.", valueName: "name"))
        var dnsNames: [String] = []

        @Option(name: .customLong("out"), help: ArgumentHelp("Directory to write the identity into.", valueName: "dir"))
        var out: String

        @Option(
            name: .customLong("secret-name"),
            help: "Name of the Secret in secret.yaml (default: pilotfish-identity-<account>).")
        var secretName: String?

        func validate() throws {
            if hours < 1 { throw ValidationError("--hours must be at least 1") }
        }

        func run() throws {
            try reportingErrors {
                let ca = try MeshCertificateAuthority.load(fromDirectory: caDirectory)
                guard let trustDomain = trustDomain ?? ca.trustDomain else {
                    throw IdentityError(
                        "the CA in '\(caDirectory)' names no trust domain in its subject O=; pass --trust-domain")
                }
                let id = try SPIFFEID(trustDomain: trustDomain, namespace: namespace, serviceAccount: serviceAccount)
                let identity = try ca.issueWorkload(
                    spiffeID: id, dnsNames: dnsNames, validity: TimeInterval(hours) * 3600)
                try WorkloadIdentityDirectory.write(
                    identity, caCertificatePEM: ca.certificatePEM,
                    secretName: secretName ?? "pilotfish-identity-\(serviceAccount)", namespace: namespace,
                    toDirectory: out)
                print("issued \(id), valid until \(identity.certificate.notValidAfter.formatted(.iso8601));"
                    + " wrote tls.crt, tls.key, ca.crt and secret.yaml in \(out)")
            }
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect",
            abstract: "Print a PEM certificate's subject, issuer, SANs, validity and whether it is a CA.")

        @Argument(help: ArgumentHelp("PEM file (a leaf, a root or a bundle).", valueName: "file"))
        var file: String

        func run() throws {
            try reportingErrors {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw IdentityError("cannot read '\(file)'")
                }
                let summaries = try CertificateSummary.parse(pem: String(decoding: data, as: UTF8.self), source: file)
                for (index, summary) in summaries.enumerated() {
                    if summaries.count > 1 {
                        print("\(index == 0 ? "" : "\n")certificate \(index + 1) of \(summaries.count)")
                    }
                    summary.lines().forEach { print($0) }
                }
            }
        }
    }
}

private func path(_ directory: String, _ file: String) -> String {
    (directory as NSString).appendingPathComponent(file)
}

/// Prints a failure as `error: …` and exits 1, the way the serve command reports config errors.
private func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        print("error: \(error)", to: &StandardError.stream)
        throw ExitCode(1)
    }
}
