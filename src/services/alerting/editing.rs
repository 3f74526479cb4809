//! Editing what alerting runs on: rules, channels, silences and mute windows, each validated
//! field by field (the pure checks are in `domain`), stored with its audit entry.

use super::catalog_of;
use crate::app::App;
use crate::domain::alert_rules::{self};
use crate::outbound;
use crate::store::meta::alerts::{self, RuleRow};
use crate::store::meta::channels;
use crate::store::{StoreError, now_secs};

/// Why saving a rule, channel, silence or mute window failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid input")]
    Invalid(Vec<alert_rules::FieldProblem>),
}

fn problem(field: &str, message: impl Into<String>) -> SaveError {
    SaveError::Invalid(vec![alert_rules::FieldProblem {
        field: field.into(),
        message: message.into(),
    }])
}

/// Validates and stores a rule (new when `id` is `None`); audited.
pub async fn save_rule(
    app: &App,
    org_id: i64,
    id: Option<i64>,
    input: serde_json::Value,
    actor: &str,
) -> Result<RuleRow, SaveError> {
    let catalog = catalog_of(app, org_id).await?;
    let channel_ids: Vec<i64> = app
        .meta
        .call(move |c| channels::list(c, org_id))
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let spec = alert_rules::validate(&input, &catalog, |id| channel_ids.contains(&id))
        .map_err(SaveError::Invalid)?;
    let actor = actor.to_string();
    let now = now_secs();
    let row = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let id = match id {
                Some(id) => {
                    alerts::update_rule(&tx, org_id, id, &spec, now)?;
                    id
                }
                None => alerts::insert_rule(&tx, org_id, &spec, now)?,
            };
            crate::store::meta::audit::record(
                &tx,
                Some(org_id),
                &actor,
                "alert_rule.save",
                &format!("{id}: {}", spec.name),
                "",
            )?;
            let row = alerts::get_rule(&tx, org_id, id)?;
            tx.commit()?;
            Ok(row)
        })
        .await?;
    Ok(row)
}

pub async fn delete_rule(app: &App, org_id: i64, id: i64, actor: &str) -> Result<(), StoreError> {
    let actor = actor.to_string();
    app.meta
        .call(move |c| {
            let tx = c.transaction()?;
            alerts::delete_rule(&tx, org_id, id)?;
            crate::store::meta::audit::record(
                &tx,
                Some(org_id),
                &actor,
                "alert_rule.delete",
                &id.to_string(),
                "",
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
}

/// Validates and stores a channel; returns it and, for a new webhook without a given secret,
/// the generated signing secret (shown once).
pub async fn save_channel(
    app: &App,
    org_id: i64,
    id: Option<i64>,
    input: serde_json::Value,
    actor: &str,
) -> Result<(channels::ChannelRow, Option<String>), SaveError> {
    let existing = match id {
        Some(id) => Some(app.meta.call(move |c| channels::get(c, org_id, id)).await?),
        None => None,
    };
    // A secret that cannot be opened (the key file was replaced) counts as absent: the form
    // then asks for it again.
    let existing_secret = existing
        .as_ref()
        .and_then(|c| app.secrets.open_sealed(&c.sealed_secret).ok());
    let mut generated = None;
    let spec = crate::domain::notify::validate_channel(&input, existing_secret.as_deref(), || {
        let s = format!("whsec_{}", crate::security::random_token());
        generated = Some(s.clone());
        s
    })
    .map_err(SaveError::Invalid)?;
    let (field, target) = match spec.kind.as_str() {
        "webhook" => (
            "settings.url",
            spec.settings["url"].as_str().map(outbound::Target::Url),
        ),
        "slack" => ("secret", Some(outbound::Target::Url(spec.secret.as_str()))),
        _ => (
            "settings.host",
            spec.settings["host"].as_str().map(outbound::Target::Host),
        ),
    };
    if let Some(target) = target
        && let Err(m) = outbound::check_target(app.http.policy(), target).await
    {
        return Err(problem(field, &m));
    }
    if let Some(e) = &existing
        && e.kind != spec.kind
        && input
            .get("secret")
            .and_then(|s| s.as_str())
            .is_none_or(|s| s.trim().is_empty())
        && spec.kind != "webhook"
    {
        return Err(problem(
            "secret",
            "changing the kind needs the new kind's secret",
        ));
    }
    let actor = actor.to_string();
    let now = now_secs();
    let sealed = app.secrets.seal(&spec.secret);
    let hint = crate::domain::notify::mask_secret(&spec.secret);
    let row = app
        .meta
        .call(move |c| {
            let secret = channels::StoredSecret {
                sealed: &sealed,
                hint: &hint,
            };
            let tx = c.transaction()?;
            let id = match id {
                Some(id) => {
                    channels::update(
                        &tx,
                        org_id,
                        id,
                        &spec.name,
                        &spec.kind,
                        &spec.settings,
                        &secret,
                        now,
                    )?;
                    id
                }
                None => channels::insert(
                    &tx,
                    org_id,
                    &spec.name,
                    &spec.kind,
                    &spec.settings,
                    &secret,
                    now,
                )?,
            };
            crate::store::meta::audit::record(
                &tx,
                Some(org_id),
                &actor,
                "channel.save",
                &format!("{id}: {}", spec.name),
                "",
            )?;
            let row = channels::get(&tx, org_id, id)?;
            tx.commit()?;
            Ok(row)
        })
        .await?;
    Ok((row, generated))
}

pub async fn delete_channel(
    app: &App,
    org_id: i64,
    id: i64,
    actor: &str,
) -> Result<(), StoreError> {
    let actor = actor.to_string();
    app.meta
        .call(move |c| {
            let tx = c.transaction()?;
            channels::delete(&tx, org_id, id)?;
            crate::store::meta::audit::record(
                &tx,
                Some(org_id),
                &actor,
                "channel.delete",
                &id.to_string(),
                "",
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
}

/// Creates a silence from `matchers` text and a duration or end time.
pub async fn create_silence(
    app: &App,
    org_id: i64,
    matchers: &str,
    duration: &str,
    comment: &str,
    actor: &str,
) -> Result<i64, SaveError> {
    let mut problems = Vec::new();
    let parsed = crate::domain::alerts::parse_matchers(matchers).unwrap_or_else(|m| {
        problems.push(alert_rules::FieldProblem {
            field: "matchers".into(),
            message: m,
        });
        Vec::new()
    });
    if parsed.is_empty() && problems.is_empty() {
        problems.push(alert_rules::FieldProblem {
            field: "matchers".into(),
            message: "name at least one label, e.g. severity=low or rule=Revenue low".into(),
        });
    }
    let secs = alert_rules::parse_duration(duration).unwrap_or_else(|m| {
        problems.push(alert_rules::FieldProblem {
            field: "duration".into(),
            message: m,
        });
        0
    });
    if secs == 0 && problems.iter().all(|p| p.field != "duration") {
        problems.push(alert_rules::FieldProblem {
            field: "duration".into(),
            message: "must be longer than 0".into(),
        });
    }
    if comment.chars().count() > 500 {
        problems.push(alert_rules::FieldProblem {
            field: "comment".into(),
            message: "is longer than 500 characters".into(),
        });
    }
    if !problems.is_empty() {
        return Err(SaveError::Invalid(problems));
    }
    let (comment, actor) = (comment.trim().to_string(), actor.to_string());
    let now = now_secs();
    Ok(app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let id =
                alerts::insert_silence(&tx, org_id, &parsed, now + secs, &comment, &actor, now)?;
            crate::store::meta::audit::record(
                &tx,
                Some(org_id),
                &actor,
                "silence.create",
                &id.to_string(),
                "",
            )?;
            tx.commit()?;
            Ok(id)
        })
        .await?)
}

/// Creates a recurring mute window (in the org's time zone).
pub async fn create_mute_window(
    app: &App,
    org_id: i64,
    name: &str,
    days: &str,
    start: &str,
    end: &str,
    matchers: &str,
) -> Result<i64, SaveError> {
    use crate::domain::alerts::{MuteWindow, parse_days, parse_matchers, parse_time_of_day};
    let mut problems = Vec::new();
    let mut note = |field: &str, m: String| {
        problems.push(alert_rules::FieldProblem {
            field: field.into(),
            message: m,
        })
    };
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 80 {
        note("name", "needs 1-80 characters".into());
    }
    let days = parse_days(days).unwrap_or_else(|m| {
        note("days", m);
        Vec::new()
    });
    let start = parse_time_of_day(start).map_err(|m| note("start", m)).ok();
    let end = parse_time_of_day(end).map_err(|m| note("end", m)).ok();
    if start.is_some() && start == end {
        note("end", "must differ from the start".into());
    }
    let matchers = parse_matchers(matchers).unwrap_or_else(|m| {
        note("matchers", m);
        Vec::new()
    });
    let (Some(start), Some(end)) = (start, end) else {
        return Err(SaveError::Invalid(problems));
    };
    if !problems.is_empty() {
        return Err(SaveError::Invalid(problems));
    }
    let window = MuteWindow { days, start, end };
    let now = now_secs();
    Ok(app
        .meta
        .call(move |c| alerts::insert_mute_window(c, org_id, &name, &window, &matchers, now))
        .await?)
}
