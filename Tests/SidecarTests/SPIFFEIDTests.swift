import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

@Suite struct SPIFFEIDTests {
    @Test func kubernetesFormRoundTripsThroughParsing() throws {
        let id = try SPIFFEID(trustDomain: "cluster.local", namespace: "shop", serviceAccount: "checkout-v2")
        #expect(id.description == "spiffe://cluster.local/ns/shop/sa/checkout-v2")
        let parsed = try SPIFFEID(parsing: id.description)
        #expect(parsed == id)
        #expect(parsed.trustDomain == "cluster.local")
        #expect(parsed.path == "/ns/shop/sa/checkout-v2")
        #expect(parsed.namespace == "shop")
        #expect(parsed.serviceAccount == "checkout-v2")
    }

    @Test func nonKubernetesPathsParseWithoutNamespace() throws {
        let id = try SPIFFEID(parsing: "spiffe://example.org_prod/billing/Payments.v1")
        #expect(id.trustDomain == "example.org_prod")
        #expect(id.namespace == nil)
        #expect(id.serviceAccount == nil)
        #expect(try SPIFFEID(parsing: "spiffe://td/ns/a/sa/b/extra").namespace == nil)
    }

    @Test(arguments: [
        ("http://cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
        ("SPIFFE://cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
        ("spiffe:///ns/a/sa/b", "trust domain is empty"),
        ("spiffe://Cluster.local/ns/a/sa/b", "lower-case"),
        ("spiffe://cluster.local:8443/ns/a/sa/b", "must not have a port"),
        ("spiffe://admin@cluster.local/ns/a/sa/b", "must not have user info"),
        ("spiffe://cluster.local", "has no path"),
        ("spiffe://cluster.local/", "empty segment"),
        ("spiffe://cluster.local/ns/a/sa/b/", "empty segment"),
        ("spiffe://cluster.local/ns//sa/b", "empty segment"),
        ("spiffe://cluster.local/ns/../sa/b", "'..' segment"),
        ("spiffe://cluster.local/ns/./sa/b", "'.' segment"),
        ("spiffe://cluster.local/ns/a/sa/b?x=1", "found '?'"),
        ("spiffe://cluster.local/ns/a/sa/b#frag", "found '#'"),
        ("spiffe://cluster.local/ns/a%20b/sa/b", "found '%'"),
    ])
    func malformedIDsAreRefusedNamingTheInput(input: String, reason: String) {
        #expect {
            try SPIFFEID(parsing: input)
        } throws: { error in
            let message = (error as? IdentityError)?.message ?? ""
            return message.contains("'\(input)'") && message.contains(reason)
        }
    }

    @Test func overlongIDsAreRefused() {
        let long = "spiffe://td/" + String(repeating: "a", count: 2040)
        #expect(throws: IdentityError("invalid SPIFFE ID '\(long)': longer than 2048 bytes")) {
            try SPIFFEID(parsing: long)
        }
    }

    @Test(arguments: [
        ("cluster.local", "Default", "web", "invalid namespace 'Default'"),
        ("cluster.local", "default", "-web", "invalid service account '-web'"),
        ("cluster.local", "default", "web.v1", "invalid service account 'web.v1'"),
        ("cluster.local", "", "web", "invalid namespace ''"),
        ("cluster.local", String(repeating: "n", count: 64), "web", "at most 63 characters"),
        ("cluster_local", "default", "web", "invalid trust domain 'cluster_local'"),
        ("cluster..local", "default", "web", "invalid trust domain 'cluster..local'"),
        ("Cluster.Local", "default", "web", "invalid trust domain 'Cluster.Local'"),
        ("", "default", "web", "invalid trust domain ''"),
    ])
    func kubernetesNamesMustBeDNSLabels(trustDomain: String, namespace: String, account: String, message: String) {
        #expect {
            try SPIFFEID(trustDomain: trustDomain, namespace: namespace, serviceAccount: account)
        } throws: { error in
            (error as? IdentityError)?.message.contains(message) ?? false
        }
    }

    @Test func dnsNameGrammar() {
        #expect(DNSName.labelProblem("a") == nil)
        #expect(DNSName.labelProblem(String(repeating: "a", count: 63)) == nil)
        #expect(DNSName.labelProblem("a-") != nil)
        #expect(DNSName.labelProblem("é") == "must consist of lower-case letters, digits and '-' (found 'é')")
        #expect(DNSName.subdomainProblem("web.shop.svc.cluster.local") == nil)
        #expect(DNSName.subdomainProblem(".local") != nil)
        #expect(DNSName.sanProblem("*.shop.svc") == nil)
        #expect(DNSName.sanProblem("a.*.svc") != nil)
        #expect(DNSName.sanProblem("*") != nil)
    }
}
