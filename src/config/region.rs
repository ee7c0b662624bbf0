//! The Genesys Cloud regions (API.md §1.1): a region is a domain, and every org in it
//! shares `api.<domain>` and `login.<domain>`. There are no per-org hostnames, so nothing
//! here ever takes an org name.

use std::fmt;

/// One Genesys Cloud region: its SDK name (for humans who know it as `eu_west_1`) and the
/// domain Convoy derives its hosts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    name: &'static str,
    domain: &'static str,
}

/// Every region of API.md §1.1, in that table's order.
pub const REGIONS: [Region; 18] = [
    Region::new("us_east_1", "mypurecloud.com"),
    Region::new("us_east_2", "use2.us-gov-pure.cloud"),
    Region::new("us_west_2", "usw2.pure.cloud"),
    Region::new("ca_central_1", "cac1.pure.cloud"),
    Region::new("sa_east_1", "sae1.pure.cloud"),
    Region::new("mx_central_1", "mxc1.pure.cloud"),
    Region::new("eu_west_1", "mypurecloud.ie"),
    Region::new("eu_west_2", "euw2.pure.cloud"),
    Region::new("eu_central_1", "mypurecloud.de"),
    Region::new("eu_central_2", "euc2.pure.cloud"),
    Region::new("eusc_de_east_1", "edee1.eusc-pure.cloud"),
    Region::new("me_central_1", "mec1.pure.cloud"),
    Region::new("ap_south_1", "aps1.pure.cloud"),
    Region::new("ap_northeast_1", "mypurecloud.jp"),
    Region::new("ap_northeast_2", "apne2.pure.cloud"),
    Region::new("ap_northeast_3", "apne3.pure.cloud"),
    Region::new("ap_southeast_1", "apse1.pure.cloud"),
    Region::new("ap_southeast_2", "mypurecloud.com.au"),
];

impl Region {
    const fn new(name: &'static str, domain: &'static str) -> Self {
        Region { name, domain }
    }

    /// The region whose domain is `domain` (ASCII case and a trailing dot ignored).
    pub fn from_domain(domain: &str) -> Option<Region> {
        let wanted = domain.trim().trim_end_matches('.');
        REGIONS
            .iter()
            .copied()
            .find(|region| region.domain.eq_ignore_ascii_case(wanted))
    }

    /// The SDK's name for the region, e.g. `eu_west_1`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The region domain, e.g. `mypurecloud.ie`.
    pub fn domain(&self) -> &'static str {
        self.domain
    }

    /// `https://api.<domain>`: the REST API origin, without a trailing slash.
    pub fn api_base(&self) -> String {
        format!("https://api.{}", self.domain)
    }

    /// `https://login.<domain>`: the OAuth token origin, without a trailing slash.
    pub fn login_base(&self) -> String {
        format!("https://login.{}", self.domain)
    }

    /// A likely intended domain for a text that is not one: an SDK region name
    /// (`eu_west_1`, `eu-west-1`) or a host (`api.mypurecloud.ie`).
    pub fn suggest(text: &str) -> Option<Region> {
        let text = text.trim().to_ascii_lowercase();
        let as_name = text.replace('-', "_");
        if let Some(region) = REGIONS.iter().find(|region| region.name == as_name) {
            return Some(*region);
        }
        let host = text
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        ["api.", "login.", "apps.", "streaming."]
            .iter()
            .find_map(|prefix| host.strip_prefix(prefix))
            .and_then(Region::from_domain)
    }

    /// All domains, comma separated: what an "unknown region" problem lists.
    pub fn known_domains() -> String {
        REGIONS
            .iter()
            .map(|region| region.domain)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_derive_from_the_domain() {
        let dublin = Region::from_domain("mypurecloud.ie");
        assert_eq!(
            dublin.map(|r| r.api_base()).as_deref(),
            Some("https://api.mypurecloud.ie")
        );
        assert_eq!(
            dublin.map(|r| r.login_base()).as_deref(),
            Some("https://login.mypurecloud.ie")
        );
        assert_eq!(dublin.map(|r| r.name()), Some("eu_west_1"));
    }

    #[test]
    fn every_domain_is_unique_and_found() {
        for region in REGIONS {
            assert_eq!(Region::from_domain(region.domain()), Some(region));
        }
        let mut domains: Vec<_> = REGIONS.iter().map(Region::domain).collect();
        domains.sort_unstable();
        domains.dedup();
        assert_eq!(domains.len(), REGIONS.len());
    }

    #[test]
    fn sdk_names_and_hosts_suggest_the_domain() {
        assert_eq!(
            Region::suggest("eu-west-1").map(|r| r.domain()),
            Some("mypurecloud.ie")
        );
        assert_eq!(
            Region::suggest("https://api.usw2.pure.cloud/").map(|r| r.domain()),
            Some("usw2.pure.cloud")
        );
        assert_eq!(Region::suggest("mars.pure.cloud"), None);
    }
}
