//! The People pages: the person list (all people who sent events, or one cohort's, with a
//! search), the org's cohorts with a form to define one, and a person's page (properties,
//! distinct ids and their event timeline). Cohort forms become the API's JSON definition, so
//! the page and the API validate alike.

use askama::Template;
use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::cohorts;
use crate::domain::roles::Permission;
use crate::store::events::cohorts::{self as sql, CohortFilter};
use crate::store::events::queries::{self, Cursor, EventQuery};
use crate::store::meta::cohorts as store;
use crate::web::api::people::{PersonListParams, parse_person_params, person_page};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::form::FormAction;
use crate::web::pages::{Nav, nav};

fn local_time(tz: Tz, micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

pub struct PersonLine {
    pub key: String,
    pub identified: bool,
    pub events: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub properties: String,
}

pub struct CohortLine {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub rule: String,
    pub size: i64,
}

#[derive(Template)]
#[template(path = "people.html")]
pub struct PeoplePage {
    pub nav: Nav,
    pub persons: Vec<PersonLine>,
    pub cohorts: Vec<CohortLine>,
    pub cohort: String,
    pub search: String,
    pub next: Option<String>,
    pub can_edit: bool,
    /// The cohort form's values and its problem, when a definition was refused.
    pub form_error: Option<String>,
    pub values: Vec<(String, String)>,
}

impl PeoplePage {
    pub fn v(&self, name: &str) -> String {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// One sentence for a cohort's rule ("did signup at least 3 times in 30 days and plan = pro").
fn describe(def: &cohorts::CohortDef) -> String {
    let parts: Vec<String> = def
        .conditions
        .iter()
        .map(|c| match c {
            cohorts::Condition::Behaviour {
                event,
                min_count,
                max_count,
                days,
            } => {
                let times = match max_count {
                    Some(max) if max == min_count => format!("exactly {min_count}×"),
                    Some(max) => format!("{min_count}–{max}×"),
                    None => format!("at least {min_count}×"),
                };
                let filters = if event.filters.is_empty() {
                    String::new()
                } else {
                    format!(" (with {} filters)", event.filters.len())
                };
                format!(
                    "did {}{filters} {times} in the last {days} days",
                    event.event
                )
            }
            cohorts::Condition::Person { filters } => filters
                .iter()
                .map(|f| {
                    let value = match &f.value {
                        Some(crate::domain::events::FilterValue::Text(t)) => format!(" {t}"),
                        Some(crate::domain::events::FilterValue::Number(n)) => format!(" {n}"),
                        None => String::new(),
                    };
                    format!("{} {:?}{value}", f.key, f.op).to_lowercase()
                })
                .collect::<Vec<_>>()
                .join(" and "),
        })
        .collect();
    let joint = match def.matching {
        cohorts::Match::All => " and ",
        cohorts::Match::Any => " or ",
    };
    parts.join(joint)
}

async fn cohort_lines(app: &App, org_id: i64) -> Result<Vec<CohortLine>, PageError> {
    let rows = app.meta.call(move |c| store::list(c, org_id)).await?;
    let now = chrono::Utc::now().timestamp_micros();
    let defs: Vec<(store::CohortRow, cohorts::CohortDef)> = rows
        .into_iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_str(&r.definition).ok()?;
            let d = cohorts::parse_definition(&v).ok()?;
            Some((r, d))
        })
        .collect();
    let filters: Vec<CohortFilter> = defs
        .iter()
        .map(|(_, d)| CohortFilter {
            def: d.clone(),
            now_micros: now,
        })
        .collect();
    let sizes = app
        .events
        .read(move |c| {
            filters
                .iter()
                .map(|f| sql::count_members(c, org_id, f))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(defs
        .into_iter()
        .zip(sizes)
        .map(|((r, d), size)| CohortLine {
            id: r.id,
            name: r.name,
            description: r.description,
            rule: describe(&d),
            size,
        })
        .collect())
}

async fn people_page(
    app: &App,
    m: &OrgMember,
    params: PersonListParams,
    form_error: Option<String>,
    values: Vec<(String, String)>,
) -> Result<PeoplePage, PageError> {
    let tz: Tz = m.org.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let (cohort, search) = (
        params.cohort.map(|c| c.to_string()).unwrap_or_default(),
        params.search.clone().unwrap_or_default(),
    );
    let (rows, next) = person_page(app, m.org.id, params)
        .await
        .map_err(|e| PageError::BadRequest(e.message))?;
    Ok(PeoplePage {
        nav: nav(app, m, "analytics").await?,
        persons: rows
            .into_iter()
            .map(|p| PersonLine {
                key: p.person_key,
                identified: p.identified,
                events: p.events,
                first_seen: local_time(tz, p.first_seen_micros),
                last_seen: local_time(tz, p.last_seen_micros),
                properties: p.props_json.unwrap_or_default(),
            })
            .collect(),
        cohorts: cohort_lines(app, m.org.id).await?,
        cohort,
        search,
        next,
        can_edit: m.role.allows(Permission::AnalyzeData),
        form_error,
        values,
    })
}

/// `GET /o/{slug}/people?cohort=&search=&cursor=`.
pub async fn people(
    State(app): State<App>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    // An empty form field means "not given".
    let raw: String = raw
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.ends_with('=') && !p.is_empty())
        .collect::<Vec<_>>()
        .join("&");
    let params = parse_person_params(&raw).map_err(|e| PageError::BadRequest(e.message))?;
    let page = people_page(&app, &m, params, None, Vec::new()).await?;
    Ok(Html(page.render()?).into_response())
}

/// The API's cohort JSON from the page's form: one behaviour condition and / or one person
/// property condition.
fn cohort_body(form: &FormAction) -> Value {
    let mut conditions = Vec::new();
    let event = form.get("event").trim();
    if !event.is_empty() {
        let number = |k: &str| {
            let v = form.get(k).trim();
            v.parse::<u64>()
                .map(|n| json!(n))
                .unwrap_or_else(|_| if v.is_empty() { Value::Null } else { json!(v) })
        };
        let mut c = json!({"type": "behaviour", "event": event, "min_count": number("min_count"), "days": number("days")});
        if c["min_count"].is_null() {
            c.as_object_mut().map(|m| m.remove("min_count"));
        }
        conditions.push(c);
    }
    let key = form.get("property").trim();
    if !key.is_empty() {
        let op = match form.get("op") {
            "" => "eq",
            other => other,
        };
        let mut filter = json!({"key": key, "op": op});
        let value = form.get("value").trim();
        if !value.is_empty() {
            filter["value"] = json!(value);
        }
        conditions.push(json!({"type": "person", "filters": [filter]}));
    }
    json!({
        "name": form.get("name"),
        "description": form.get("description"),
        "match": if form.get("match") == "any" { "any" } else { "all" },
        "conditions": conditions,
    })
}

/// `POST /o/{slug}/cohorts`: defines a cohort (Analyst and up); a refused definition shows the
/// form again with the problem, as 422.
pub async fn create_cohort(
    State(app): State<App>,
    m: OrgMember,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, fields.clone(), Permission::AnalyzeData)?;
    let input = match cohorts::parse_cohort(&cohort_body(&form)) {
        Ok(input) => input,
        Err((field, reason)) => {
            let params = parse_person_params("").map_err(|e| PageError::BadRequest(e.message))?;
            let page =
                people_page(&app, &m, params, Some(format!("{field}: {reason}")), fields).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
        }
    };
    let who = m.actor();
    let definition = input.def.to_json().to_string();
    form.record(&app, "cohort.create", move |tx, org_id| {
        let id = store::create(
            tx,
            org_id,
            &input.name,
            &input.description,
            &definition,
            &who,
        )?;
        Ok((id, input.name.clone()))
    })
    .await?;
    form.done("people")
}

/// `POST /o/{slug}/cohorts/{id}/delete`.
pub async fn delete_cohort(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, fields, Permission::AnalyzeData)?;
    form.record(&app, "cohort.delete", move |tx, org_id| {
        let row = store::get(tx, org_id, id)?;
        store::delete(tx, org_id, id)?;
        Ok(((), row.name))
    })
    .await?;
    form.done("people")
}

pub struct TimelineEvent {
    pub time: String,
    pub name: String,
    pub distinct_id: String,
    pub properties: String,
}

#[derive(Template)]
#[template(path = "person.html")]
pub struct PersonPage {
    pub nav: Nav,
    pub id: String,
    pub person_key: String,
    pub distinct_ids: Vec<String>,
    pub identified: bool,
    pub properties: Vec<(String, String)>,
    pub events: Vec<TimelineEvent>,
    /// The link to the older events, if there are more.
    pub older: Option<String>,
}

/// Events per page of a person's timeline.
const TIMELINE_PAGE: usize = 100;

/// `GET /o/{slug}/person?id=<distinct id>&before=<cursor>`: the person and their events,
/// newest first.
pub async fn person(
    State(app): State<App>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let fields = crate::web::api::parse_query(raw.as_deref().unwrap_or(""))
        .map_err(|_| PageError::BadRequest("the query string is not valid".into()))?;
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let id = crate::domain::events::id_string(&Value::String(get("id").unwrap_or_default()))
        .map_err(|r| PageError::BadRequest(format!("id {r}")))?;
    let cursor = match get("before") {
        None => None,
        Some(c) => {
            let (ts, uuid) = c
                .split_once('_')
                .and_then(|(t, u)| Some((t.parse::<i64>().ok()?, uuid::Uuid::parse_str(u).ok()?)))
                .ok_or_else(|| {
                    PageError::BadRequest("before is not a cursor this page gave".into())
                })?;
            Some(Cursor {
                ts_micros: ts,
                uuid: uuid.to_string(),
            })
        }
    };
    let tz: Tz = m.org.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let org_id = m.org.id;
    let lookup = id.clone();
    let (found, events) = app
        .events
        .read(move |c| {
            let found = crate::store::events::identity::person(c, org_id, &lookup)?;
            let q = EventQuery {
                org_id,
                from_micros: 0,
                // Through 2199, the last instant events may carry.
                to_micros: 7_258_118_400_000_000,
                person: Some(lookup.clone()),
                ..EventQuery::default()
            };
            let events = queries::list(c, &q, cursor.as_ref(), TIMELINE_PAGE + 1)?;
            Ok((found, events))
        })
        .await?;
    if found.is_none() && events.is_empty() {
        return Err(PageError::NotFound);
    }
    let older = (events.len() > TIMELINE_PAGE)
        .then(|| events.get(TIMELINE_PAGE - 1))
        .flatten()
        .map(|e| {
            format!(
                "person?id={}&before={}_{}",
                crate::domain::url::urlencode(&id),
                e.ts_micros,
                e.uuid
            )
        });
    let (person_key, distinct_ids, identified, props) = match found {
        Some(p) => (p.person_key, p.distinct_ids, p.identified, p.props_json),
        None => (id.clone(), vec![id.clone()], false, "{}".to_string()),
    };
    let properties = match serde_json::from_str::<Value>(&props) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let shown = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, shown)
            })
            .collect(),
        _ => Vec::new(),
    };
    let page = PersonPage {
        nav: nav(&app, &m, "analytics").await?,
        id,
        person_key,
        distinct_ids,
        identified,
        properties,
        events: events
            .into_iter()
            .take(TIMELINE_PAGE)
            .map(|e| TimelineEvent {
                time: local_time(tz, e.ts_micros),
                name: e.name,
                distinct_id: e.distinct_id,
                properties: e.props_json,
            })
            .collect(),
        older,
    };
    Ok(Html(page.render()?).into_response())
}
