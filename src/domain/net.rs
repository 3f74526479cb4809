//! Which network addresses an outbound request to a user-given target (webhook and Slack URLs,
//! SMTP hosts, integration bases) may reach: the public internet, and private ranges only
//! where the server's config lists them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// The setting that opens private ranges, named in every refusal.
pub const ALLOW_SETTING: &str = "outbound.allow_private_targets";

/// The public internet plus the ranges the config allows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetPolicy {
    allowed: Vec<IpNet>,
}

impl TargetPolicy {
    /// `allowed`: CIDR ranges (`10.0.0.0/8`, `fd00::/8`) or single addresses (`127.0.0.1`).
    pub fn new(allowed: &[String]) -> Result<TargetPolicy, String> {
        let allowed = allowed
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| {
                        format!("{entry:?} is not an address or CIDR range such as 10.0.0.0/8")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TargetPolicy { allowed })
    }

    /// Whether a connection to `ip` is allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// A refusal naming the address and the setting that would allow it.
    pub fn refusal(ip: IpAddr) -> String {
        format!(
            "{} is a {} address; outbound requests reach only public addresses unless \
             {ALLOW_SETTING} lists it",
            canonical(ip),
            kind(canonical(ip))
        )
    }
}

/// The proxies (`server.trusted_proxies`) whose `X-Forwarded-For` says who the client is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies {
    proxies: Vec<IpNet>,
}

impl TrustedProxies {
    /// CIDR ranges or single addresses, as [`TargetPolicy::new`] takes them.
    pub fn new(proxies: &[String]) -> Result<TrustedProxies, String> {
        Ok(TrustedProxies {
            proxies: TargetPolicy::new(proxies)?.allowed,
        })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer itself unless it is a trusted proxy; then the last
    /// address in `X-Forwarded-For` (read right to left) that is not a trusted proxy. A
    /// client can prepend anything to the header, so only what trusted proxies appended
    /// counts; an unreadable entry stops the walk at the proxy that appended it.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return canonical(peer);
        }
        let mut client = canonical(peer);
        for hop in forwarded_for.unwrap_or("").rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`, or the deprecated `::127.0.0.1`)
/// is judged as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                    IpAddr::V4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32))
                } else {
                    ip
                }
            }
        },
        v4 => v4,
    }
}

/// Globally routable unicast: not loopback, private, link-local, shared (CGNAT), multicast,
/// broadcast, unspecified, documentation, benchmarking or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_kind(v4).is_none(),
        IpAddr::V6(v6) => v6_kind(v6).is_none(),
    }
}

fn kind(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
    .unwrap_or("public")
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() || a >= 240 => "reserved",
        _ if ip.is_documentation() => "documentation",
        _ if a == 198 && (18..20).contains(&b) => "benchmarking",
        _ if a == 192 && b == 0 && c == 0 => "protocol-assignment",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_multicast() => "multicast",
        _ if s[0] & 0xfe00 == 0xfc00 => "private (unique local)",
        _ if s[0] & 0xffc0 == 0xfe80 => "link-local",
        _ if s[0] & 0xffc0 == 0xfec0 => "site-local",
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => "documentation",
        // NAT64 (64:ff9b::/96) carries an IPv4 address a gateway would reach for us.
        _ if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] => {
            let v4 = Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32);
            return v4_kind(v4);
        }
        _ if s[0] & 0xe000 != 0x2000 => "reserved",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Every inward kind the issue names is refused, in both families and in IPv4-in-IPv6
    /// spellings; ordinary public addresses pass.
    #[test]
    fn inward_addresses_are_not_public() {
        for inward in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(inward)), "{inward} counted as public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(public)), "{public} refused");
        }
    }

    /// An allowed range opens exactly that range: `10.0.0.0/8` lets 10.9.9.9 through but not
    /// 192.168.0.1; a single address is a /32.
    #[test]
    fn the_config_opens_listed_ranges_only() {
        let p = TargetPolicy::new(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        assert!(p.permits(ip("10.9.9.9")));
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(!p.permits(ip("127.0.0.2")));
        assert!(!p.permits(ip("192.168.0.1")));
        assert!(p.permits(ip("8.8.8.8")));
        assert!(TargetPolicy::new(&["10.0.0.0/33".into()]).is_err());
        assert!(TargetPolicy::new(&["localhost".into()]).is_err());
    }

    /// Behind a trusted proxy the client is the rightmost untrusted hop; an untrusted peer's
    /// header is ignored (anyone can send one), and a forged prefix does not help.
    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let t = TrustedProxies::new(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        let xff = Some("198.51.100.1, 203.0.113.7, 10.0.0.2");
        assert_eq!(t.client(ip("127.0.0.1"), xff), ip("203.0.113.7"));
        assert_eq!(t.client(ip("8.8.8.8"), xff), ip("8.8.8.8"));
        assert_eq!(t.client(ip("127.0.0.1"), None), ip("127.0.0.1"));
        assert_eq!(
            t.client(ip("127.0.0.1"), Some("junk, 203.0.113.9")),
            ip("203.0.113.9")
        );
        assert_eq!(
            t.client(ip("127.0.0.1"), Some("203.0.113.9, junk")),
            ip("127.0.0.1")
        );
        assert_eq!(
            t.client(ip("::ffff:127.0.0.1"), Some("10.1.1.1")),
            ip("10.1.1.1")
        );
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("127.0.0.1"), xff), ip("127.0.0.1"));
    }

    #[test]
    fn refusals_name_the_kind_and_the_setting() {
        let m = TargetPolicy::refusal(ip("::ffff:169.254.169.254"));
        assert!(m.contains("169.254.169.254 is a link-local address"), "{m}");
        assert!(m.contains(ALLOW_SETTING), "{m}");
    }
}
