import Foundation

/// iptables comes in two variants that program different kernel tables: `nft` (iptables-nft, the Debian
/// default) and `legacy` (x_tables). Rules added with one are invisible to the other, so we use the one
/// the host already uses.
public enum IptablesVariant: String, Sendable, CaseIterable {
    case nft, legacy

    public enum Choice: String, Sendable, CaseIterable { case auto, nft, legacy }

    /// Command name for this variant and family, e.g. `iptables-nft-restore`.
    public func command(_ family: IptablesRuleset.Family, _ tool: String) -> String {
        "\(family.command)-\(rawValue)-\(tool)"
    }

    /// Whether this variant may hold rules for the family in our network namespace. Asking iptables-legacy
    /// would instantiate its tables as a side effect, so for legacy the kernel's list of live x_tables
    /// tables is read instead.
    public func mayHaveRules(_ family: IptablesRuleset.Family) -> Bool {
        switch self {
        case .nft: return true
        case .legacy:
            let file = family == .ipv4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names"
            let names = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            return !names.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
    }
}
