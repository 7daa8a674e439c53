//! Distinct phone numbers for a load run, spread so that the gateway's per-number limits
//! and its consecutive-numbers guard hold without being switched off: consecutive
//! indexes land in different blocks of 100, and a block is reused only after every other
//! block of every prefix has been used once.

/// National prefixes of the three networks that have an SMSC and an MSSP in the
/// simulator (Viettel, VinaPhone, MobiFone).
pub const PREFIXES: &[&str] = &[
    "086", "096", "097", "098", "032", "033", "034", "035", "036", "037", "038",
    "039", // Viettel
    "088", "091", "094", "081", "082", "083", "084", "085", // VinaPhone
    "089", "090", "093", "070", "076", "077", "078", "079", // MobiFone
];

const BLOCKS_PER_PREFIX: u64 = 100_000;
/// Steps through the blocks in an order that is far from sequential; coprime with the
/// number of blocks (it is prime and larger than the number of prefixes).
const STRIDE: u64 = 7_919;

/// The `index`-th number (national format, `0…`) of a run that starts at `offset`.
pub fn number(offset: u64, index: u64) -> String {
    let blocks = PREFIXES.len() as u64 * BLOCKS_PER_PREFIX;
    let i = offset.wrapping_add(index) % (blocks * 100);
    let block = (i % blocks).wrapping_mul(STRIDE) % blocks;
    let within = (i / blocks) % 100;
    let prefix = PREFIXES[(block / BLOCKS_PER_PREFIX) as usize];
    format!("{prefix}{:05}{within:02}", block % BLOCKS_PER_PREFIX)
}

/// `0971234567` → `84971234567`.
pub fn e164(national: &str) -> String {
    format!("84{}", &national[1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_are_valid_distinct_and_never_share_a_block_early() {
        let mut seen = HashSet::new();
        let mut blocks = HashSet::new();
        for i in 0..200_000 {
            let n = number(12_345, i);
            assert_eq!(n.len(), 10, "{n}");
            assert!(
                gateway::domain::Msisdn::parse(&n).is_ok(),
                "{n} is not a Vietnamese mobile number"
            );
            assert!(seen.insert(n.clone()), "{n} twice");
            assert!(blocks.insert(n[..8].to_owned()), "block of {n} reused");
        }
    }

    #[test]
    fn every_network_gets_a_share() {
        let mut per_prefix = std::collections::HashMap::new();
        for i in 0..28_000 {
            *per_prefix
                .entry(number(0, i)[..3].to_owned())
                .or_insert(0u32) += 1;
        }
        assert_eq!(per_prefix.len(), PREFIXES.len());
        assert!(per_prefix.values().all(|c| *c > 500), "{per_prefix:?}");
    }

    #[test]
    fn e164_form() {
        assert_eq!(e164("0971234567"), "84971234567");
    }
}
