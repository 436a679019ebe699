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
}
