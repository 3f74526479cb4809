//! Every outbound HTTP request (notifications, integrations) and SMTP connection goes through
//! here, so none reaches loopback, private or link-local addresses unless
//! `outbound.allow_private_targets` lists them ([`TargetPolicy`]).
//!
//! The check happens where the connection is made: names are resolved by [`GuardedResolver`]
//! and only permitted addresses are handed to the connector (a name that resolves inward is
//! refused, and a second lookup cannot swap the address in between); literal IP hosts, which
//! the client never resolves, are checked before the request is built. Redirects are never
//! followed, and proxies from the environment are ignored (they would connect for us).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub use crate::domain::net::TargetPolicy;

/// The HTTP client for user-given and provider addresses.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
}

impl Outbound {
    pub fn new(policy: TargetPolicy) -> Result<Outbound, reqwest::Error> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("Vitals/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(Outbound { client, policy })
    }

    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, String> {
        Ok(self.client.get(self.check_url(url)?))
    }

    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, String> {
        Ok(self.client.post(self.check_url(url)?))
    }

    /// http or https, a host, and (for a literal address) a permitted one.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        check_url(&self.policy, url)
    }
}

/// See [`Outbound::check_url`]. The URL itself is never part of the message: it may be a
/// secret (a Slack webhook).
pub fn check_url(policy: &TargetPolicy, url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the URL must start with http:// or https://".into());
    }
    let literal = match parsed.host() {
        None => return Err("the URL has no host".into()),
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = literal.filter(|ip| !policy.permits(*ip)) {
        return Err(TargetPolicy::refusal(ip));
    }
    Ok(parsed)
}

/// Why a target cannot be connected to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// Every address is one the policy refuses.
    #[error("{0}")]
    Refused(String),
    /// The name does not resolve (now): may work later.
    #[error("{0}")]
    Unresolved(String),
}

/// Resolves `host` and keeps the permitted addresses; none left is an error naming the first
/// refused one.
pub async fn resolve_permitted(
    policy: &TargetPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, TargetError> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return if policy.permits(ip) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(TargetError::Refused(TargetPolicy::refusal(ip)))
        };
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TargetError::Unresolved(format!("cannot resolve {host}: {e}")))?
        .collect();
    let (permitted, refused): (Vec<_>, Vec<_>) =
        found.into_iter().partition(|a| policy.permits(a.ip()));
    match (permitted.is_empty(), refused.first()) {
        (false, _) => Ok(permitted),
        (true, Some(first)) => Err(TargetError::Refused(format!(
            "{host} resolves to {}",
            TargetPolicy::refusal(first.ip())
        ))),
        (true, None) => Err(TargetError::Unresolved(format!("{host} has no address"))),
    }
}

/// Checks a target when it is saved, so the user hears at once what delivery would refuse:
/// `url` (an http(s) URL) or `host` (an SMTP host). A name that does not resolve now passes
/// (delivery checks again, and DNS may be down); one that resolves inward does not.
pub async fn check_target(policy: &TargetPolicy, target: Target<'_>) -> Result<(), String> {
    let host = match target {
        Target::Url(url) => {
            let parsed = check_url(policy, url)?;
            match parsed.host() {
                Some(url::Host::Domain(d)) => d.to_string(),
                _ => return Ok(()),
            }
        }
        Target::Host(host) => host.to_string(),
    };
    match resolve_permitted(policy, &host, 0).await {
        Err(TargetError::Refused(m)) => Err(m),
        Ok(_) | Err(TargetError::Unresolved(_)) => Ok(()),
    }
}

/// What [`check_target`] checks.
pub enum Target<'a> {
    Url(&'a str),
    Host(&'a str),
}

/// reqwest's resolver for [`Outbound`].
struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve_permitted(&policy, &host, 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A request error as text for logs and `last_error`: its cause chain, never the URL (which
/// may carry a secret, as a Slack webhook's does).
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    strip_urls(&text)
}

/// Replaces every `http://…` / `https://…` run in `text` with `<url>`.
pub fn strip_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        out.push_str(&rest[..at]);
        out.push_str("<url>");
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's URL is the channel's secret: it never survives into an error text.
    #[test]
    fn urls_are_stripped_from_error_text() {
        assert_eq!(
            strip_urls(
                "error sending request for url (https://hooks.slack.com/services/T0/B0/XyZ): \
                 connection refused"
            ),
            "error sending request for url (<url>): connection refused"
        );
        assert_eq!(
            strip_urls("a http://x/y and https://z"),
            "a <url> and <url>"
        );
        assert_eq!(strip_urls("no address here"), "no address here");
    }

    /// Literal addresses are judged by the URL parser's reading, so the short and hex forms of
    /// 127.0.0.1 are refused like the dotted one; names pass to the resolver.
    #[test]
    fn literal_hosts_are_checked_before_any_request() {
        let p = TargetPolicy::default();
        for inward in [
            "http://127.0.0.1:9/x",
            "http://127.1/",
            "http://0x7f000001/",
            "http://[::1]/",
            "http://[::ffff:169.254.169.254]/latest",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let err = check_url(&p, inward).expect_err(inward);
            assert!(err.contains("outbound.allow_private_targets"), "{err}");
        }
        assert!(check_url(&p, "https://hooks.slack.com/services/x").is_ok());
        assert!(check_url(&p, "ftp://example.com/").is_err());
        let open = TargetPolicy::new(&["127.0.0.1".into()]).unwrap();
        assert!(check_url(&open, "http://127.0.0.1:9/x").is_ok());
    }

    /// `localhost` resolves to loopback, so it is refused by name.
    #[tokio::test]
    async fn a_name_resolving_inward_is_refused() {
        let err = resolve_permitted(&TargetPolicy::default(), "localhost", 80)
            .await
            .expect_err("localhost is loopback");
        assert!(
            matches!(&err, TargetError::Refused(m) if m.starts_with("localhost resolves to ")),
            "{err}"
        );
        let open = TargetPolicy::new(&["127.0.0.0/8".into(), "::1".into()]).unwrap();
        assert!(resolve_permitted(&open, "localhost", 80).await.is_ok());
    }
}
