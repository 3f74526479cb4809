//! HubSpot over OAuth 2.0 (authorisation code with PKCE): the consent redirect, the code
//! exchange, refresh before expiry, and the pull of contacts into daily `leads`.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::IntegrationsConfig;

/// Scopes asked for: read contacts.
pub const SCOPES: &str = "crm.objects.contacts.read";

/// A PKCE verifier (43+ characters of the unreserved set) and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = format!(
        "{}{}",
        crate::security::random_token(),
        crate::security::random_token()
    );
    let verifier: String = verifier
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
        .collect();
    (verifier.clone(), challenge_of(&verifier))
}

/// BASE64URL(SHA-256(verifier)) without padding (RFC 7636 S256).
pub fn challenge_of(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The consent page URL.
pub fn authorize_url(
    config: &IntegrationsConfig,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> String {
    let q = |s: &str| crate::domain::url::urlencode(s);
    format!(
        "{}/oauth/authorize?client_id={}&redirect_uri={}&scope={}&state={}&code_challenge={}&code_challenge_method=S256&response_type=code",
        config.hubspot_auth_base.trim_end_matches('/'),
        q(&config.hubspot_client_id),
        q(redirect_uri),
        q(SCOPES),
        q(state),
        q(challenge)
    )
}

/// Tokens as stored (sealed) for an integration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The grant is invalid, expired or revoked: the user must connect again.
    #[error("HubSpot refused the authorisation: {0}")]
    Refused(String),
    #[error("HubSpot could not be reached or answered {0}")]
    Failed(String),
}

async fn token_request(
    http: &crate::outbound::Outbound,
    config: &IntegrationsConfig,
    form: &[(&str, &str)],
) -> Result<Tokens, OAuthError> {
    let mut all: Vec<(&str, &str)> = vec![
        ("client_id", config.hubspot_client_id.as_str()),
        ("client_secret", config.hubspot_client_secret.as_str()),
    ];
    all.extend_from_slice(form);
    let r = http
        .post(&format!(
            "{}/oauth/v1/token",
            config.hubspot_api_base.trim_end_matches('/')
        ))
        .map_err(OAuthError::Failed)?
        .form(&all)
        .send()
        .await
        .map_err(|e| OAuthError::Failed(crate::outbound::describe(e)))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let message = || {
        body["message"]
            .as_str()
            .or(body["error_description"].as_str())
            .or(body["error"].as_str())
            .unwrap_or("no message")
            .to_string()
    };
    if status.is_client_error() {
        return Err(OAuthError::Refused(message()));
    }
    if !status.is_success() {
        return Err(OAuthError::Failed(format!("{status}: {}", message())));
    }
    let text = |k: &str| body[k].as_str().map(String::from);
    match (text("access_token"), text("refresh_token")) {
        (Some(access_token), Some(refresh_token)) => Ok(Tokens {
            access_token,
            refresh_token,
            expires_at: crate::store::now_secs() + body["expires_in"].as_i64().unwrap_or(1800),
        }),
        _ => Err(OAuthError::Failed("the token answer has no tokens".into())),
    }
}

/// Exchanges the authorisation code (with the PKCE verifier) for tokens.
pub async fn exchange_code(
    http: &crate::outbound::Outbound,
    config: &IntegrationsConfig,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Tokens, OAuthError> {
    token_request(
        http,
        config,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// New tokens from the refresh token.
pub async fn refresh(
    http: &crate::outbound::Outbound,
    config: &IntegrationsConfig,
    refresh_token: &str,
) -> Result<Tokens, OAuthError> {
    token_request(
        http,
        config,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Contacts created since `since` (unix seconds): their creation times, following HubSpot's
/// `paging.next.after` cursor.
pub async fn contacts_created(
    http: &crate::outbound::Outbound,
    config: &IntegrationsConfig,
    access_token: &str,
    since: i64,
) -> Result<Vec<i64>, OAuthError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![
            ("limit".to_string(), "100".to_string()),
            ("properties".to_string(), "createdate".to_string()),
        ];
        if let Some(a) = &after {
            query.push(("after".into(), a.clone()));
        }
        let r = http
            .get(&format!(
                "{}/crm/v3/objects/contacts",
                config.hubspot_api_base.trim_end_matches('/')
            ))
            .map_err(OAuthError::Failed)?
            .bearer_auth(access_token)
            .query(&query)
            .send()
            .await
            .map_err(|e| OAuthError::Failed(crate::outbound::describe(e)))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(OAuthError::Refused(
                body["message"]
                    .as_str()
                    .unwrap_or("unauthorised")
                    .to_string(),
            ));
        }
        if !status.is_success() {
            return Err(OAuthError::Failed(format!("{status}")));
        }
        for c in body["results"].as_array().into_iter().flatten() {
            let created = c["properties"]["createdate"]
                .as_str()
                .or(c["createdAt"].as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp());
            if let Some(t) = created
                && t >= since
            {
                out.push(t);
            }
        }
        after = body["paging"]["next"]["after"].as_str().map(String::from);
        if after.is_none() {
            return Ok(out);
        }
    }
}

/// New contacts per day: `day_starts` are the days' starts (the last closes the last day).
pub fn leads_per_day(created: &[i64], day_starts: &[i64]) -> BTreeMap<i64, f64> {
    let mut out = BTreeMap::new();
    for w in day_starts.windows(2) {
        let n = created.iter().filter(|t| **t >= w[0] && **t < w[1]).count();
        out.insert(w[0], n as f64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s256_challenge_matches_rfc_7636() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (v, c) = pkce_pair();
        assert!(v.len() >= 43, "{v}");
        assert_eq!(challenge_of(&v), c);
    }

    #[test]
    fn leads_are_counted_per_day() {
        let days = [0, 86_400, 172_800];
        let counts = leads_per_day(&[10, 20, 86_399, 86_400, 200_000], &days);
        assert_eq!(counts.get(&0), Some(&3.0));
        assert_eq!(counts.get(&86_400), Some(&1.0));
    }
}
