//! Cohorts, the person list, saved insights, the event catalogue and API analytics over HTTP,
//! on hand-worked fixtures (each written out in the test's doc comment), with every new route
//! tried from another org.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::analytics::send;
use crate::common::*;

fn ago(days: f64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::milliseconds((days * 86_400_000.0) as i64);
    t.to_rfc3339()
}

fn e(name: &str, user: &str, ts: String, props: Value) -> Value {
    json!({"name": name, "distinct_id": user, "timestamp": ts, "properties": props})
}

fn keys_of(persons: &Value) -> Vec<String> {
    persons["persons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["person_key"].as_str().unwrap().to_string())
        .collect()
}

async fn get_api(server: &TestServer, key: &str, path: &str) -> (StatusCode, Value) {
    get_json(server, key, &format!("/api/v1{path}")).await
}

/// People (days before now; UTC org):
/// | person | events                                               | person props |
/// | u1     | signup −5 d; report_viewed −3, −2, −1 d; purchase −1 d | plan = pro   |
/// | u2     | signup −5 d; report_viewed −1 d                        | —            |
/// | u3     | signup −45 d; report_viewed ×3 at −40 d                | plan = pro   |
/// | u4     | signup −5 d; purchase −4 d                             | plan = free  |
/// Cohorts: "Power" = report_viewed ≥ 3 times in 30 days → {u1} (u3's are 40 days old);
/// "Pro" = plan eq pro → {u1, u3}; "Either" (any of both) → {u1, u3}; "Both" (all) → {u1}.
/// Over the last 60 days: signups 4, in Pro 2 (also with the person filter plan = pro), in
/// Power 1. Funnel signup → purchase within 7
/// days: everyone [4, 2] (u1, u4 convert); Pro [2, 1]. Stickiness of report_viewed per day,
/// Pro: u3 on 1 day, u1 on 3 days. Persons of Pro, most recently active first: u1, u3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cohort_filters_every_analysis_and_lists_its_people() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let read_only = api_key(&server, &a, &["read"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    send(
        &server,
        &key,
        vec![
            e("signup", "u1", ago(5.0), json!({"$set": {"plan": "pro"}})),
            e("report_viewed", "u1", ago(3.0), json!({})),
            e("report_viewed", "u1", ago(2.0), json!({})),
            e("report_viewed", "u1", ago(1.0), json!({})),
            e("purchase", "u1", ago(1.0), json!({})),
            e("signup", "u2", ago(5.0), json!({})),
            e("report_viewed", "u2", ago(1.0), json!({})),
            e("signup", "u3", ago(45.0), json!({"$set": {"plan": "pro"}})),
            e("report_viewed", "u3", ago(40.0), json!({"n": 1})),
            e("report_viewed", "u3", ago(40.0), json!({"n": 2})),
            e("report_viewed", "u3", ago(40.0), json!({"n": 3})),
            e("signup", "u4", ago(5.0), json!({"$set": {"plan": "free"}})),
            e("purchase", "u4", ago(4.0), json!({})),
        ],
    )
    .await;
    let create = |name: &'static str, body: Value| {
        let (server, key) = (&server, key.clone());
        async move {
            let mut body = body;
            body["name"] = json!(name);
            let (status, cohort) = post_api(server, &key, "/cohorts", body).await;
            assert_eq!(status, StatusCode::CREATED, "{cohort}");
            cohort
        }
    };
    let behaviour =
        json!({"type": "behaviour", "event": "report_viewed", "min_count": 3, "days": 30});
    let pro = json!({"type": "person", "filters": [{"key": "plan", "op": "eq", "value": "pro"}]});
    let power = create("Power", json!({"conditions": [behaviour]})).await;
    let pro_cohort = create("Pro", json!({"conditions": [pro]})).await;
    let either = create(
        "Either",
        json!({"match": "any", "conditions": [behaviour, pro]}),
    )
    .await;
    let both = create(
        "Both",
        json!({"match": "all", "conditions": [behaviour, pro]}),
    )
    .await;
    for (cohort, size) in [(&power, 1), (&pro_cohort, 2), (&either, 2), (&both, 1)] {
        assert_eq!(cohort["size"], size, "{cohort}");
    }
    let (power_id, pro_id) = (
        power["id"].as_i64().unwrap(),
        pro_cohort["id"].as_i64().unwrap(),
    );

    let range = json!({"from": ago(60.0), "to": ago(-0.01)});
    let with = |q: Value, cohort: Option<i64>| {
        let mut q = q;
        for (k, v) in range.as_object().unwrap() {
            q[k] = v.clone();
        }
        if let Some(c) = cohort {
            q["cohort"] = json!(c);
        }
        q
    };
    let total = |body: &Value| body["series"][0]["total"].as_f64().unwrap();
    let signups = json!({"event": "signup", "interval": "week"});
    for (cohort, expected) in [(None, 4.0), (Some(pro_id), 2.0), (Some(power_id), 1.0)] {
        let (status, body) = post_api(
            &server,
            &key,
            "/analytics/trends",
            with(signups.clone(), cohort),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(total(&body), expected, "signups in {cohort:?}");
    }
    // A person property as a filter of the event: the same people as the Pro cohort.
    let pro_signups = json!({"event": {"event": "signup", "filters": [{"key": "plan", "type": "person", "value": "pro"}]}, "interval": "week"});
    let (status, body) =
        post_api(&server, &key, "/analytics/trends", with(pro_signups, None)).await;
    assert_eq!((status, total(&body)), (StatusCode::OK, 2.0), "{body}");
    let funnel = json!({"steps": ["signup", "purchase"], "window": {"value": 7, "unit": "day"}});
    for (cohort, expected) in [(None, [4, 2]), (Some(pro_id), [2, 1])] {
        let (status, body) = post_api(
            &server,
            &key,
            "/analytics/funnels",
            with(funnel.clone(), cohort),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let counts: Vec<i64> = body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_i64().unwrap())
            .collect();
        assert_eq!(counts, expected, "funnel in {cohort:?}");
    }
    let (status, body) = post_api(
        &server,
        &key,
        "/analytics/stickiness",
        with(
            json!({"event": "report_viewed", "interval": "day"}),
            Some(pro_id),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let users: Vec<i64> = body["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["users"].as_i64().unwrap())
        .collect();
    assert_eq!(&users[..4], &[1, 0, 1, 0], "{body}");

    // The people of a cohort, most recently active first; all people, in pages.
    let (status, persons) = get_api(&server, &key, &format!("/persons?cohort={pro_id}")).await;
    assert_eq!(status, StatusCode::OK, "{persons}");
    assert_eq!(keys_of(&persons), ["u1", "u3"]);
    assert_eq!(persons["persons"][0]["properties"]["plan"], "pro");
    assert_eq!(persons["persons"][0]["events"], 5);
    let (_, first) = get_api(&server, &key, "/persons?limit=2").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, second) = get_api(&server, &key, &format!("/persons?limit=2&cursor={cursor}")).await;
    let mut all = keys_of(&first);
    all.extend(keys_of(&second));
    all.sort();
    assert_eq!(all, ["u1", "u2", "u3", "u4"]);
    assert!(second["next_cursor"].is_null());
    let (_, found) = get_api(&server, &key, "/persons?search=FREE").await;
    assert_eq!(keys_of(&found), ["u4"]);

    // Bad input names the field; a read-only key cannot define one.
    for (body, field) in [
        (json!({"conditions": [behaviour]}), "name"),
        (
            json!({"name": "x", "conditions": [{"type": "behaviour", "event": "a"}]}),
            "conditions[0].days",
        ),
        (
            json!({"name": "x", "conditions": [{"type": "person", "filters": [{"key": "plan", "op": "like"}]}]}),
            "conditions[0].filters[0]",
        ),
    ] {
        let (status, err) = post_api(&server, &key, "/cohorts", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let (status, _) = post_api(
        &server,
        &key,
        "/cohorts",
        json!({"name": "Pro", "conditions": [pro]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a second cohort named Pro");
    let (status, _) = post_api(
        &server,
        &read_only,
        "/cohorts",
        json!({"name": "Y", "conditions": [pro]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for path in [
        "/persons?limit=0",
        "/persons?limit=501",
        "/persons?cursor=zz",
        "/persons?cohort=x",
        "/persons?sort=name",
    ] {
        let (status, err) = get_api(&server, &key, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
    }
    let (status, err) = post_api(
        &server,
        &key,
        "/analytics/trends",
        with(signups.clone(), Some(999_999)),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("cohort"))
    );

    // Another org sees neither the cohorts nor the people, and cannot use or change them.
    let (status, listed) = get_api(&server, &key_b, "/cohorts").await;
    assert_eq!(
        (status, listed["cohorts"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (status, _) = get_api(&server, &key_b, &format!("/cohorts/{pro_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send_json(
        &server,
        &key_b,
        reqwest::Method::PUT,
        &format!("/cohorts/{pro_id}"),
        Some(json!({"name": "Mine", "conditions": [pro]})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send_json(
        &server,
        &key_b,
        reqwest::Method::DELETE,
        &format!("/cohorts/{pro_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) = post_api(
        &server,
        &key_b,
        "/analytics/trends",
        with(signups.clone(), Some(pro_id)),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("cohort"))
    );
    let (status, _) = get_api(&server, &key_b, &format!("/persons?cohort={pro_id}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, theirs) = get_api(&server, &key_b, "/persons").await;
    assert!(keys_of(&theirs).is_empty());

    // Changing and deleting a cohort.
    let (status, changed) = send_json(&server, &key, reqwest::Method::PUT, &format!("/cohorts/{power_id}"),
        Some(json!({"name": "Power", "conditions": [{"type": "behaviour", "event": "report_viewed", "min_count": 1, "days": 30}]}))).await;
    assert_eq!(
        (status, changed["size"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{changed}"
    );
    let (status, _) = send_json(
        &server,
        &key,
        reqwest::Method::DELETE,
        &format!("/cohorts/{power_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get_api(&server, &key, &format!("/cohorts/{power_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The pages: the cohort's people, and a person's timeline with their properties.
    let html = get_page(
        &a.client,
        &server.url(&format!("/o/{}/people?cohort={pro_id}", a.slug)),
    )
    .await
    .1;
    assert!(
        html.contains("person?id=u1")
            && html.contains("person?id=u3")
            && !html.contains("person?id=u2"),
        "{html}"
    );
    assert!(
        html.contains("plan eq pro"),
        "the cohort's rule in words: {html}"
    );
    let r = a
        .client
        .get(server.url(&format!("/o/{}/person?id=u1", a.slug)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert_eq!(html.matches("<td>report_viewed</td>").count(), 3, "{html}");
    assert!(html.contains("<td>purchase</td>") && html.contains("<td>pro</td>"));
    let r = a
        .client
        .get(server.url(&format!("/o/{}/person?id=nobody", a.slug)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = b
        .client
        .get(server.url("/o/beta/person?id=u1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "Beta has no u1");
    server.stop().await;
}

/// A saved trend of signups over the last 60 days with a cohort: its result is what the trend
/// endpoint answers for the same question (three signups in the fixture: two now, one ten
/// days ago). Saved from the page, it opens again with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_insights_keep_their_question_and_run_it() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    send(
        &server,
        &key,
        vec![
            e("signup", "u1", ago(0.1), json!({"$set": {"plan": "pro"}})),
            e("signup", "u2", ago(0.2), json!({})),
            e("signup", "u3", ago(10.0), json!({"$set": {"plan": "pro"}})),
        ],
    )
    .await;
    let (_, pro) = post_api(&server, &key, "/cohorts", json!({"name": "Pro", "conditions": [{"type": "person", "filters": [{"key": "plan", "value": "pro"}]}]})).await;
    let pro_id = pro["id"].as_i64().unwrap();
    let question = json!({"event": "signup", "interval": "day"});
    let (status, saved) = post_api(
        &server,
        &key,
        "/analytics/insights",
        json!({
            "name": "Daily signups", "kind": "trends", "query": question, "last_days": 60,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let id = saved["id"].as_i64().unwrap();
    let (status, run) = get_api(&server, &key, &format!("/analytics/insights/{id}/result")).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["result"]["series"][0]["total"], 3.0, "{run}");
    assert_eq!(run["insight"]["name"], "Daily signups");
    // With the cohort: u1 and u3.
    let mut with_cohort = question.clone();
    with_cohort["cohort"] = json!(pro_id);
    let (status, changed) = send_json(
        &server,
        &key,
        reqwest::Method::PUT,
        &format!("/analytics/insights/{id}"),
        Some(json!({
            "name": "Daily pro signups", "kind": "trends", "query": with_cohort, "last_days": 60,
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (_, run) = get_api(&server, &key, &format!("/analytics/insights/{id}/result")).await;
    assert_eq!(run["result"]["series"][0]["total"], 2.0, "{run}");
    let (_, listed) = get_api(&server, &key, "/analytics/insights").await;
    assert_eq!(listed["insights"][0]["name"], "Daily pro signups");

    // Bad questions are named inside `query`; another org's cohort is refused like none.
    for (body, field) in [
        (
            json!({"name": "x", "kind": "trends", "query": {}}),
            "query.event",
        ),
        (json!({"name": "x", "kind": "charts", "query": {}}), "kind"),
        (
            json!({"name": "x", "kind": "funnels", "query": {"steps": ["a"]}}),
            "query.steps",
        ),
    ] {
        let (status, err) = post_api(&server, &key, "/analytics/insights", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let (status, err) = post_api(
        &server,
        &key_b,
        "/analytics/insights",
        json!({"name": "x", "kind": "trends", "query": with_cohort}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("query.cohort")),
        "{err}"
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, _) = send_json(
            &server,
            &key_b,
            method,
            &format!("/analytics/insights/{id}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = get_api(&server, &key_b, &format!("/analytics/insights/{id}/result")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) = get_api(&server, &key_b, "/analytics/insights").await;
    assert_eq!(theirs["insights"].as_array().unwrap().len(), 0);

    // Saved from the page: the form carries the question shown; it opens again by id.
    let page = server.url(&format!(
        "/o/{}/analytics?view=funnel&steps=signup,purchase",
        a.slug
    ));
    let html = get_page(&a.client, &page).await.1;
    let query = extract(&html, "name=\"query\" value=\"", "\"")
        .expect("a save form")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"");
    let token = csrf(&a.client, &page).await;
    let r = a
        .client
        .post(server.url(&format!("/o/{}/analytics/save", a.slug)))
        .form(&[
            ("csrf", token.as_str()),
            ("kind", "funnels"),
            ("query", query.as_str()),
            ("name", "Signup to purchase"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.url().query().unwrap_or("").starts_with("insight="),
        "{}",
        r.url()
    );
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Signup to purchase") && html.contains("id=\"funnel-steps\""),
        "{html}"
    );
    let saved_page = get_page(
        &a.client,
        &server.url(&format!("/o/{}/analytics?view=saved", a.slug)),
    )
    .await
    .1;
    assert!(saved_page.contains("Signup to purchase") && saved_page.contains("Daily pro signups"));
    let r = b
        .client
        .get(server.url(&format!("/o/beta/analytics?insight={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "Beta cannot open Alpha's insight"
    );

    let (status, _) = send_json(
        &server,
        &key,
        reqwest::Method::DELETE,
        &format!("/analytics/insights/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get_api(&server, &key, &format!("/analytics/insights/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// Events: signup {plan: "pro", seats: 3}, signup {plan: 5}, purchase {amount: 9.5, at:
/// "2026-03-01T10:00:00Z"}, and an identify setting {email}. The catalogue: signup (2) with
/// plan [number, string] and seats [number]; purchase (1) with amount [number] and at
/// [datetime]; person property email [string]. Emptied and re-opened, the store fills the
/// catalogue again from the events it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_lists_names_properties_and_types() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;
    send(
        &server,
        &key,
        vec![
            e("signup", "u1", ago(1.0), json!({"plan": "pro", "seats": 3})),
            e("signup", "u2", ago(1.0), json!({"plan": 5})),
            e(
                "purchase",
                "u1",
                ago(0.5),
                json!({"amount": 9.5, "at": "2026-03-01T10:00:00Z"}),
            ),
            e(
                "$identify",
                "u1",
                ago(0.4),
                json!({"$set": {"email": "u1@example.com"}}),
            ),
        ],
    )
    .await;
    let check = |cat: &Value| {
        let event = |name: &str| {
            cat["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let props = |name: &str| -> Vec<(String, Vec<String>)> {
            event(name)["properties"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["key"].as_str().unwrap().to_string(),
                        p["types"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| t.as_str().unwrap().to_string())
                            .collect(),
                    )
                })
                .collect()
        };
        assert_eq!(event("signup")["count"], 2, "{cat}");
        assert_eq!(event("purchase")["count_30d"], 1);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            props("signup"),
            vec![
                ("plan".into(), s(&["number", "string"])),
                ("seats".into(), s(&["number"]))
            ]
        );
        assert_eq!(
            props("purchase"),
            vec![
                ("amount".into(), s(&["number"])),
                ("at".into(), s(&["datetime"]))
            ]
        );
        assert_eq!(cat["person_properties"][0]["key"], "email", "{cat}");
        assert_eq!(cat["person_properties"][0]["types"], json!(["string"]));
    };
    let (status, cat) = get_api(&server, &key, "/events/catalogue").await;
    assert_eq!(status, StatusCode::OK, "{cat}");
    check(&cat);
    let (_, theirs) = get_api(&server, &key_b, "/events/catalogue").await;
    assert_eq!(theirs["events"], json!([]), "Beta's catalogue is its own");
    assert_eq!(theirs["person_properties"], json!([]));
    let html = get_page(
        &a.client,
        &server.url(&format!("/o/{}/analytics?view=catalogue", a.slug)),
    )
    .await
    .1;
    assert!(
        html.contains("<code>seats</code>") && html.contains("number, string"),
        "{html}"
    );

    // A store written before the catalogue existed: its definitions are found again.
    let dir = server.stop().await;
    {
        let db = duckdb::Connection::open(dir.path().join("metrics.duckdb")).unwrap();
        db.execute_batch("DELETE FROM property_definitions; CHECKPOINT;")
            .unwrap();
    }
    let server = TestServer::start_with(dir, |_| {}).await;
    let (_, again) = wait_until("the catalogue filled again", || async {
        let (status, cat) = get_api(&server, &key, "/events/catalogue").await;
        (cat["person_properties"]
            .as_array()
            .is_some_and(|p| !p.is_empty()))
        .then_some((status, cat))
    })
    .await;
    check(&again);
    server.stop().await;
}

/// Request events in 2026-03-01 00:00–02:00 UTC:
/// | time  | method | route      | status | ms  |
/// | 00:10 | GET    | /v1/orders | 200    | 10  |
/// | 00:20 | GET    | /v1/orders | 200    | 20  |
/// | 00:30 | GET    | /v1/orders | 500    | 30  |
/// | 01:10 | GET    | /v1/orders | 404    | 40  |
/// | 01:20 | POST   | /v1/orders | 201    | 100 |
/// Totals: 5 requests, 1 5xx (rate 0.2), 1 4xx, 5/120 per minute; p50 30 ms, p95 (linear
/// between the 4th and 5th at 3.8) 40 + 0.8 × 60 = 88 ms, p99 40 + 0.96 × 60 = 97.6 ms.
/// GET /v1/orders: 4 requests, 5xx rate 0.25, p50 25, p95 30 + 0.85 × 10 = 38.5. POST: 1,
/// p50 100. Per hour: [3, 2] requests, [1, 0] 5xx. The same under other names (event
/// api_call with path / code / ms) with the names mapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_analytics_gives_rates_errors_and_latency_per_route() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;
    let rows = [
        ("00:10", "GET", 200, 10.0),
        ("00:20", "GET", 200, 20.0),
        ("00:30", "GET", 500, 30.0),
        ("01:10", "GET", 404, 40.0),
        ("01:20", "POST", 201, 100.0),
    ];
    let mut events = Vec::new();
    for (i, (at, method, status, ms)) in rows.iter().enumerate() {
        let ts = format!("2026-03-01T{at}:00Z");
        events.push(e(
            "$api_request",
            &format!("client-{i}"),
            ts.clone(),
            json!({"route": "/v1/orders", "method": method, "status": status, "duration_ms": ms}),
        ));
        events.push(e(
            "api_call",
            "client",
            ts,
            json!({"path": "/v1/orders", "code": status, "ms": ms}),
        ));
    }
    send(&server, &key, events).await;
    let range = json!({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T02:00:00Z"});
    let mut q = range.clone();
    q["interval"] = json!("hour");
    let (status, body) = post_api(&server, &key, "/analytics/api", q.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t = &body["totals"];
    assert_eq!(
        (
            t["requests"].as_i64(),
            t["server_errors"].as_i64(),
            t["client_errors"].as_i64()
        ),
        (Some(5), Some(1), Some(1))
    );
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-9;
    assert!(
        close(&t["error_rate"], 0.2) && close(&t["requests_per_minute"], 5.0 / 120.0),
        "{t}"
    );
    assert!(
        close(&t["p50_ms"], 30.0) && close(&t["p95_ms"], 88.0) && close(&t["p99_ms"], 97.6),
        "{t}"
    );
    let routes = body["routes"].as_array().unwrap();
    assert_eq!(routes[0]["route"], "GET /v1/orders");
    assert!(
        close(&routes[0]["error_rate"], 0.25)
            && close(&routes[0]["p50_ms"], 25.0)
            && close(&routes[0]["p95_ms"], 38.5),
        "{}",
        routes[0]
    );
    assert_eq!(
        (routes[1]["route"].as_str(), routes[1]["p50_ms"].as_f64()),
        (Some("POST /v1/orders"), Some(100.0))
    );
    let per_hour: Vec<(i64, i64)> = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["requests"].as_i64().unwrap(),
                s["server_errors"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_hour, [(3, 1), (2, 0)]);

    let mut mapped = range.clone();
    for (k, v) in [
        ("event", "api_call"),
        ("route_property", "path"),
        ("status_property", "code"),
        ("duration_property", "ms"),
    ] {
        mapped[k] = json!(v);
    }
    let (_, other) = post_api(&server, &key, "/analytics/api", mapped).await;
    assert_eq!(other["totals"]["requests"], 5, "{other}");
    assert!(close(&other["totals"]["p95_ms"], 88.0));
    assert_eq!(
        other["routes"][0]["route"], "/v1/orders",
        "no method property: the route alone"
    );

    for (field, value) in [
        ("interval", json!("second")),
        ("route_property", json!("")),
        ("colour", json!(1)),
    ] {
        let mut bad = range.clone();
        bad[field] = value;
        let (status, err) = post_api(&server, &key, "/analytics/api", bad).await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{err}"
        );
    }
    let (_, theirs) = post_api(&server, &key_b, "/analytics/api", q).await;
    assert_eq!(
        theirs["totals"]["requests"], 0,
        "Beta's requests are its own"
    );

    let html = get_page(
        &a.client,
        &server.url(&format!(
            "/o/{}/analytics?view=api&from=2026-03-01&to=2026-03-02",
            a.slug
        )),
    )
    .await
    .1;
    assert!(
        html.contains("id=\"api-routes\"")
            && html.contains("GET /v1/orders")
            && html.contains("88 ms"),
        "{html}"
    );
    server.stop().await;
}
