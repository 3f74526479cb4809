//! Requests built to stall, crash or trick the server (#13): each gets a clear 4xx naming the
//! field and leaves the server answering.

use reqwest::StatusCode;

use crate::common::*;

/// GETs `path` and checks that it is refused with 400 naming `field`; returns the body.
async fn refused_naming(
    server: &TestServer,
    key: &str,
    path: &str,
    field: &str,
) -> serde_json::Value {
    let (status, body) = get_json(server, key, path).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    assert_eq!(body["error"]["field"], field, "{path}: {body}");
    body
}

/// Chrono parses years from −262,143 to +262,142. Across that range the bucket estimate used to
/// overflow past the 20,000-bucket cap and building the buckets ran for minutes on the runtime.
/// Now every time parameter outside 1970-01-01 .. 2200-01-01 is refused by name, on every read
/// endpoint that takes one, and the largest accepted span is refused by the bucket cap:
/// 1970–2200 in hours is about 2.0 M buckets (230 y × 8,766 h), far above 20,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_ranges_beyond_1970_to_2200_are_refused_by_name() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "Europe/Berlin").await;
    let key = api_key(&server, &a, &["read"]).await;
    let extremes = "from=-262143-01-02&to=%2B262142-11-15";
    for path in [
        format!("/api/v1/metrics/revenue/series?bucket=month&{extremes}"),
        format!("/api/v1/metrics/revenue/points?{extremes}"),
        format!("/api/v1/overview?bucket=month&{extremes}"),
        format!("/api/v1/health/score/history?bucket=month&{extremes}"),
    ] {
        let body = refused_naming(&server, &key, &path, "from").await;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("1970-01-01")),
            "{body}"
        );
    }
    // `to` alone past the end, and the last accepted instant's neighbour.
    let past_the_end =
        "/api/v1/metrics/revenue/series?bucket=day&from=2026-01-01&to=2200-01-01T00:00:00Z";
    refused_naming(&server, &key, past_the_end, "to").await;
    // The widest accepted span in hours: refused by the cap, naming the bucket.
    let hourly = "/api/v1/metrics/revenue/series?bucket=hour&from=1970-01-02&to=2199-12-31";
    refused_naming(&server, &key, hourly, "bucket").await;
    // In months the same span is 2,760 buckets: answered, every bucket present and empty.
    let (status, body) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?bucket=month&from=1970-01-02&to=2199-12-31",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["series"][0]["points"].as_array().map(Vec::len),
        Some(2_760)
    );
    let (status, _) = get_json(&server, &key, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

/// A login's `next` that a browser would turn into another site (`/\t/evil.example` loses its
/// tab and becomes `//evil.example`; `\` reads as `/`) or that breaks the header (CR LF) sends
/// the user home instead; a clean same-site path is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_next_stays_on_the_site() {
    let server = TestServer::start().await;
    setup(&server, "Acme", "UTC").await;
    let cases = [
        ("/\t/evil.example", "/"),
        ("/\\evil.example", "/"),
        ("\\/evil.example", "/"),
        ("/x\r\nSet-Cookie: stolen=1", "/"),
        ("https://evil.example/", "/"),
        ("/o/acme/alerts?state=firing", "/o/acme/alerts?state=firing"),
    ];
    for (next, expected) in cases {
        let r = no_redirects()
            .post(server.url("/login"))
            .form(&[
                ("email", OWNER_EMAIL),
                ("password", PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(r.headers()["location"], expected, "{next:?}");
        assert!(r.headers().get("set-cookie").is_some(), "{next:?} signs in");
    }
    server.stop().await;
}

/// Lists a request controls are bounded, each refusal naming what it bounds:
/// - 9 `dim.*` filters (a point has at most 8 dimensions): 400 naming the ninth, while 8 pass;
/// - a silence on 21 labels (at most 20): 422 naming `matchers`;
/// - an integration schedule every 10 s or every minute (at most every 5 minutes): 400 naming
///   `schedule`, checked before the integration is even looked up;
/// - the 501st custom metric of an org (at most 500): 409, while another org may still add one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_controlled_lists_are_bounded_by_name() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write", "admin"]).await;
    let key_b = api_key(&server, &b, &["read", "write", "admin"]).await;
    let filters = |n: usize| {
        (0..n)
            .map(|i| format!("dim.k{i}=v"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let (status, body) = get_json(
        &server,
        &key,
        &format!("/api/v1/metrics/revenue/points?{}", filters(8)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nine = format!("/api/v1/metrics/revenue/points?{}", filters(9));
    refused_naming(&server, &key, &nine, "dim.k8").await;

    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, key: &str, body: serde_json::Value| {
        client
            .request(method, server.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..21).map(|i| (format!("l{i}"), "x".into())).collect();
    let r = send(
        reqwest::Method::POST,
        "/api/v1/silences",
        &key,
        serde_json::json!({"matchers": labels, "duration": "1h"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "matchers", "{body}");

    for schedule in ["*/10 * * * * *", "0 * * * * *"] {
        let r = send(
            reqwest::Method::PUT,
            "/api/v1/integrations/1",
            &key,
            serde_json::json!({"schedule": schedule}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{schedule}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], "schedule", "{body}");
    }

    let metric = |i: usize| serde_json::json!({"key": format!("m{i}"), "name": format!("M {i}"), "category": "growth"});
    for i in 0..500 {
        let r = send(
            reqwest::Method::POST,
            "/api/v1/custom-metrics",
            &key,
            metric(i),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "metric {i}");
    }
    let r = send(
        reqwest::Method::POST,
        "/api/v1/custom-metrics",
        &key,
        metric(500),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("500 custom metrics")),
        "{body}"
    );
    let r = send(
        reqwest::Method::POST,
        "/api/v1/custom-metrics",
        &key_b,
        metric(500),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "another org is not affected"
    );
    server.stop().await;
}

/// Live-update streams are bounded per session and per org (here 2 and 3): a session's third
/// stream gets 429 naming `server.max_streams_per_session`; a second session of the org gets one
/// more (3 in the org), then 429 naming `server.max_streams_per_org`; closing a stream frees
/// its slot for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_bounded_per_session_and_per_org() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.server.max_streams_per_session = 2;
        c.server.max_streams_per_org = 3;
    })
    .await;
    let a = setup(&server, "Acme", "UTC").await;
    let url = server.url(&format!("/o/{}/events", a.slug));
    let open = |client: &reqwest::Client| client.get(&url).send();
    let first = open(&a.client).await.unwrap();
    let second = open(&a.client).await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let refused = open(&a.client).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("server.max_streams_per_session")
    );

    let other = login(&server, OWNER_EMAIL, PASSWORD).await;
    let third = open(&other).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    let refused = open(&other).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("server.max_streams_per_org")
    );

    drop(first);
    let reopened = wait_until("a closed stream's slot to be freed", || async {
        let r = open(&other).await.unwrap();
        (r.status() == StatusCode::OK).then_some(r)
    })
    .await;
    drop((second, third, reopened));
    server.stop().await;
}

/// Fifty wrong passwords for one account sent at once, with five failures allowed: the attempt
/// is counted before the password is hashed, so exactly 5 are checked (401) and 45 refused
/// (429). Before, every one passed the check before any failure was recorded: 50 × 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_get_no_more_checks_than_allowed() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.auth.login_max_failures = 5;
    })
    .await;
    setup(&server, "Acme", "UTC").await;
    let attempts = (0..50).map(|_| {
        let url = server.url("/login");
        async move {
            no_redirects()
                .post(url)
                .form(&[
                    ("email", OWNER_EMAIL),
                    ("password", "wrong-password!"),
                    ("next", "/"),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (5, 45), "{statuses:?}");
    server.stop().await;
}

/// A cookie-authenticated form from an opaque origin (`Origin: null`, no `Sec-Fetch-Site`, as
/// a sandboxed frame sends it) is refused before any handler runs; the same form from this
/// site's origin goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_from_an_opaque_origin_are_refused() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let url = server.url(&format!("/o/{}/api-keys", a.slug));
    let token = csrf(&a.client, &url).await;
    let form = [("csrf", token.as_str()), ("name", "k"), ("scopes", "read")];
    let r = a
        .client
        .post(&url)
        .header("origin", "null")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let origin = server.base.clone();
    let r = a
        .client
        .post(&url)
        .header("origin", origin)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.stop().await;
}

fn header_u64(r: &reqwest::Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// Budgets per key and per session, with 5 API requests, 8 ingest requests and 6 page requests
/// a minute (GCRA: the whole budget at once, then one more every 60/n s).
/// - Key A's five reads answer 200 with `RateLimit-Limit: 5` and `RateLimit-Remaining`
///   4, 3, 2, 1, 0; the sixth is 429 naming `rate_limits.api_per_minute`, with `Retry-After`
///   between 1 and 12 s (one cell: 60 / 5) and `RateLimit-Remaining: 0`.
/// - Key A's ingest has its own budget (limit 8, remaining 7 after the first write), and
///   key B's reads are untouched (remaining 4 after its first).
/// - Ingest: eight one-point batches are stored, the ninth is 429 and writes nothing, so the
///   metric holds exactly 8 points.
/// - A fresh login session reads its remaining page budget from the first page and spends
///   it to 0; the next page is a 429 page with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_sessions_have_request_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir, |c| {
        c.rate_limits.api_per_minute = 5;
        c.rate_limits.ingest_per_minute = 8;
        c.rate_limits.pages_per_minute = 0;
    })
    .await;
    let a = setup(&server, "Acme", "UTC").await;
    let key_a = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &a, &["read"]).await;
    let client = reqwest::Client::new();
    let read = |key: &str| {
        client
            .get(server.url("/api/v1/metrics"))
            .bearer_auth(key)
            .send()
    };

    let mut remaining = Vec::new();
    for _ in 0..5 {
        let r = read(&key_a).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_u64(&r, "ratelimit-limit"), Some(5));
        remaining.push(header_u64(&r, "ratelimit-remaining").unwrap());
    }
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    let refused = read(&key_a).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = header_u64(&refused, "retry-after").expect("Retry-After");
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
    assert_eq!(header_u64(&refused, "ratelimit-remaining"), Some(0));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["field"], "rate_limits.api_per_minute",
        "{body}"
    );

    let r = read(&key_b).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_u64(&r, "ratelimit-remaining"), Some(4));

    let batch = |i: i64| {
        serde_json::json!({"points": [
            {"metric": "revenue", "timestamp": 1_767_225_600 + i * 3600, "value": 1.0}
        ]})
    };
    for i in 0..8 {
        let r = client
            .post(server.url("/api/v1/metrics"))
            .bearer_auth(&key_a)
            .json(&batch(i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "batch {i}");
        assert_eq!(header_u64(&r, "ratelimit-limit"), Some(8));
        assert_eq!(header_u64(&r, "ratelimit-remaining"), Some(7 - i as u64));
    }
    let (status, body) = post_points(&server, &key_a, &batch(8)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["field"], "rate_limits.ingest_per_minute");
    let (status, body) = get_json(
        &server,
        &key_b,
        "/api/v1/metrics/revenue/points?from=2026-01-01&to=2026-01-02",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["points"].as_array().map(Vec::len), Some(8), "{body}");
    server.stop().await;

    // Pages: a server whose sessions get 6 requests a minute.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir, |c| c.rate_limits.pages_per_minute = 6).await;
    let s = setup(&server, "Acme", "UTC").await;
    let fresh = login(&server, OWNER_EMAIL, PASSWORD).await;
    let overview = server.url(&format!("/o/{}/", s.slug));
    let first = fresh.get(&overview).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header_u64(&first, "ratelimit-limit"), Some(6));
    let left = header_u64(&first, "ratelimit-remaining").unwrap();
    assert!(left < 6, "the first page was charged");
    for n in (0..left).rev() {
        let r = fresh.get(&overview).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_u64(&r, "ratelimit-remaining"), Some(n));
    }
    let refused = fresh.get(&overview).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header_u64(&refused, "retry-after").is_some_and(|s| (1..=10).contains(&s)));
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("rate_limits.pages_per_minute")
    );
}
