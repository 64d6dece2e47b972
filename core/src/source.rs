//! [`Source`]: where connections come from, as per-source limits see it.
//!
//! One person rarely holds one IPv4 address and nothing else, but a whole
//! IPv6 /64 is routinely given to a single machine: counting per address
//! would give an attacker 2^64 fresh budgets. So addresses are grouped, by
//! default IPv4 /32 and IPv6 /64 (ergo's `ip-limits` and fail2ban do the
//! same), and an IPv4 address written as IPv6 (`::ffff:10.0.0.7`, which a
//! dual-stack listener reports) is the IPv4 address it stands for.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// An address group: an IP address with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    network: IpAddr,
    prefix: u8,
}

impl Source {
    /// The group `ip` belongs to: the first `v4_prefix` bits of an IPv4
    /// address (at most 32), the first `v6_prefix` bits of an IPv6 one (at
    /// most 128). An IPv4-mapped IPv6 address counts as IPv4.
    pub fn of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::v4(v4, v4_prefix),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::v4(v4, v4_prefix),
                None => {
                    let prefix = v6_prefix.min(128);
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    Source {
                        network: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                        prefix,
                    }
                }
            },
        }
    }

    fn v4(ip: Ipv4Addr, prefix: u8) -> Source {
        let prefix = prefix.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Source {
            network: IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask)),
            prefix,
        }
    }

    /// The group's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// How many leading bits the group's addresses share.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// A single address as itself (`10.0.0.7`, `::1`); a group as
/// `2001:db8::/64`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = match self.network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if self.prefix == whole {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix)
        }
    }
}

/// Reads a source back as [`Display`](fmt::Display) writes it (how a
/// cluster's broker carries one): `10.0.0.7`, `10.1.2.0/24`,
/// `2001:db8::/64`. Only that form: host bits set, an IPv4 address written
/// as IPv6 or a prefix longer than the address are errors, so every source
/// has one spelling.
impl FromStr for Source {
    type Err = ParseSourceError;

    fn from_str(text: &str) -> Result<Source, ParseSourceError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| ParseSourceError::Address)?;
        let whole = match ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => whole,
            // `u8`'s parser takes a leading `+`: not a spelling Display uses.
            Some(p) if p.starts_with('+') => return Err(ParseSourceError::Prefix),
            Some(p) => match p.parse::<u8>() {
                Ok(bits) if bits > whole => return Err(ParseSourceError::Prefix),
                // Display writes a single address without its prefix.
                Ok(bits) if bits == whole => return Err(ParseSourceError::NotCanonical),
                Ok(bits) => bits,
                Err(_) => return Err(ParseSourceError::Prefix),
            },
        };
        let source = Source::of(ip, prefix, prefix);
        if source.network != ip || source.prefix != prefix {
            return Err(ParseSourceError::NotCanonical);
        }
        Ok(source)
    }
}

/// Text that is not a [`Source`] as its `Display` writes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSourceError {
    /// What comes before any `/` is not an IP address.
    #[error("not an IP address")]
    Address,
    /// What follows the `/` is not a number of bits the address has.
    #[error("not a prefix length of the address")]
    Prefix,
    /// The address has host bits set past its prefix, is an IPv4 address
    /// written as IPv6, or gives the prefix of a single address.
    #[error(
        "not the group's own spelling (host bits set, IPv4 as IPv6, or /32 or /128 written out)"
    )]
    NotCanonical,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn of(text: &str) -> Source {
        Source::of(text.parse().unwrap(), 32, 64)
    }

    #[test]
    fn ipv6_addresses_of_one_64_are_one_source() {
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff::7"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_eq!(of("2001:db8:1:2:3:4:5:6").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_addresses_are_their_own_source_and_mapped_ones_too() {
        assert_ne!(of("127.0.0.1"), of("127.0.0.2"));
        assert_eq!(of("10.0.0.7"), of("::ffff:10.0.0.7"));
        assert_eq!(of("10.0.0.7").to_string(), "10.0.0.7");
        assert_eq!(of("::1").to_string(), "::/64");
    }

    #[test]
    fn prefixes_are_clamped_and_zero_means_everyone() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(Source::of(ip, 24, 64).to_string(), "10.1.2.0/24");
        assert_eq!(Source::of(ip, 99, 64).to_string(), "10.1.2.3");
        assert_eq!(Source::of(ip, 0, 64).to_string(), "0.0.0.0/0");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(Source::of(v6, 32, 0).to_string(), "::/0");
        assert_eq!(Source::of(v6, 32, 200).to_string(), "2001:db8::1");
    }

    #[test]
    fn a_source_reads_back_from_its_spelling_only() {
        for text in [
            "10.0.0.7",
            "10.1.2.0/24",
            "0.0.0.0/0",
            "2001:db8:1:2::/64",
            "::/0",
            "::1",
        ] {
            let source: Source = text.parse().unwrap();
            assert_eq!(source.to_string(), text);
        }
        for (text, error) in [
            ("10.0.0", ParseSourceError::Address),
            ("", ParseSourceError::Address),
            ("10.0.0.7/33", ParseSourceError::Prefix),
            ("10.0.0.0/+8", ParseSourceError::Prefix),
            ("10.0.0.0/", ParseSourceError::Prefix),
            ("2001:db8::/129", ParseSourceError::Prefix),
            ("10.1.2.3/24", ParseSourceError::NotCanonical),
            ("10.0.0.7/32", ParseSourceError::NotCanonical),
            ("::ffff:10.0.0.7", ParseSourceError::NotCanonical),
            ("2001:db8::1/64", ParseSourceError::NotCanonical),
        ] {
            assert_eq!(text.parse::<Source>(), Err(error), "{text}");
        }
    }

    proptest! {
        #[test]
        fn every_source_reads_back_from_its_display(
            v4 in any::<u32>(),
            v6 in any::<u128>(),
            six in any::<bool>(),
            v4_prefix in 0u8..=40,
            v6_prefix in 0u8..=140,
        ) {
            let ip = if six {
                IpAddr::V6(Ipv6Addr::from(v6))
            } else {
                IpAddr::V4(Ipv4Addr::from(v4))
            };
            let source = Source::of(ip, v4_prefix, v6_prefix);
            prop_assert_eq!(source.to_string().parse::<Source>(), Ok(source));
        }
    }
}
