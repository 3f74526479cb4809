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
    // A bare `dim` (found by the series-parameter fuzz target: it sliced past the name's
    // end and panicked the request) is an unknown parameter, named.
    refused_naming(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?dim=eu",
        "dim",
    )
    .await;
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
        let client = no_redirects();
        let token = csrf(&client, &server.url("/login")).await;
        let r = client
            .post(server.url("/login"))
            .form(&[
                ("csrf", token.as_str()),
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

/// Five hundred wrong passwords for one account sent at once, with five failures allowed: the
/// attempt is counted before the password is hashed, so exactly 5 are checked (401: five
/// argon2 runs) and 495 refused (429) without hashing. Before, every one passed the check
/// before any failure was recorded: 500 × 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_get_no_more_checks_than_allowed() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.auth.login_max_failures = 5;
    })
    .await;
    setup(&server, "Acme", "UTC").await;
    let client = no_redirects();
    let token = csrf(&client, &server.url("/login")).await;
    let attempts = (0..500).map(|_| {
        let (url, client, token) = (server.url("/login"), client.clone(), token.clone());
        async move {
            client
                .post(url)
                .form(&[
                    ("csrf", token.as_str()),
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
    assert_eq!((checked, refused), (5, 495), "{statuses:?}");
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

/// A loopback listener that answers every connection with `answer` and counts connections.
struct Target {
    url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Target {
    async fn start(answer: &'static str) -> Target {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Target { url, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// With the default `outbound.allow_private_targets = []`:
/// - saving a webhook to `127.0.0.1`, to `localhost` (a name resolving to loopback), to the
///   cloud metadata address `169.254.169.254`, a Slack URL on `[::1]` and an SMTP host
///   `localhost` is refused with 422 naming the field and the setting;
/// - channels saved while loopback was allowed (first server) are refused when delivering
///   after a restart without the allowance: the test delivery says why and the listener sees
///   no connection, for the literal address and for the name;
/// - a Stripe base on loopback is refused before any connection.
/// With loopback allowed, a receiver answering 302 is not followed (the redirect target sees
/// nothing) and a 500's body (`internal-detail-xyz`) is not reported, only its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_never_reach_inward_addresses() {
    let receiver = Target::start("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let port = receiver.url.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir, |_| {}).await; // loopback allowed (test_config)
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    let mut saved = Vec::new();
    for url in [
        format!("{}/hook", receiver.url),
        format!("http://localhost:{port}/hook"),
    ] {
        let (status, body) = post_api(
            &server,
            &key,
            "/channels",
            serde_json::json!({"name": "h", "kind": "webhook", "settings": {"url": url}}),
        )
        .await;
        // `localhost` may resolve to ::1 first, which the test config does not allow: either
        // it saves (127.0.0.1 is allowed) or the refusal names the field.
        if status == StatusCode::OK || status == StatusCode::CREATED {
            saved.push(body["id"].as_i64().unwrap());
        } else {
            assert_eq!(body["error"]["field"], "settings.url", "{body}");
        }
    }
    assert!(!saved.is_empty());
    let dir = server.stop().await;

    let server = TestServer::start_with(dir, |c| {
        c.outbound.allow_private_targets = vec![];
        c.integrations.stripe_api_base = receiver.url.clone();
    })
    .await;
    for id in &saved {
        let (status, body) = post_api(
            &server,
            &key,
            &format!("/channels/{id}/test"),
            serde_json::json!({}),
        )
        .await;
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("outbound.allow_private_targets"), "{body}");
    }
    for (body, field) in [
        (
            serde_json::json!({"name": "a", "kind": "webhook", "settings": {"url": format!("{}/x", receiver.url)}}),
            "settings.url",
        ),
        (
            serde_json::json!({"name": "b", "kind": "webhook", "settings": {"url": format!("http://localhost:{port}/x")}}),
            "settings.url",
        ),
        (
            serde_json::json!({"name": "c", "kind": "webhook", "settings": {"url": "http://169.254.169.254/latest/meta-data/"}}),
            "settings.url",
        ),
        (
            serde_json::json!({"name": "d", "kind": "slack", "secret": format!("http://[::1]:{port}/services/x")}),
            "secret",
        ),
        (
            serde_json::json!({"name": "e", "kind": "email", "settings": {"host": "localhost", "port": port, "security": "plain", "from": "a@example.com", "to": "b@example.com"}}),
            "settings.host",
        ),
    ] {
        let (status, answer) = post_api(&server, &key, "/channels", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("outbound.allow_private_targets")),
            "{answer}"
        );
    }
    let (status, body) = post_api(
        &server,
        &key,
        "/integrations",
        serde_json::json!({"provider": "stripe", "api_key": "rk_test_anything"}),
    )
    .await;
    assert!(!status.is_success(), "{body}");
    assert!(
        body.to_string().contains("outbound.allow_private_targets"),
        "{body}"
    );
    assert_eq!(receiver.hits(), 0, "nothing reached the loopback listener");
    server.stop().await;

    // Loopback allowed: a redirect is reported, not followed; a body is not reported.
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    let redirect_answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {}/elsewhere\r\ncontent-length: 0\r\n\r\n",
            receiver.url
        )
        .into_boxed_str(),
    );
    let redirecting = Target::start(redirect_answer).await;
    let failing = Target::start(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 19\r\n\r\ninternal-detail-xyz",
    )
    .await;
    for (target, expected) in [
        (&redirecting, "HTTP 302 Found (redirects are not followed"),
        (&failing, "HTTP 500 Internal Server Error"),
    ] {
        let (_, ch) = post_api(
            &server,
            &key,
            "/channels",
            serde_json::json!({"name": "h", "kind": "webhook", "settings": {"url": format!("{}/hook", target.url)}}),
        )
        .await;
        let id = ch["id"].as_i64().expect("saved");
        let (_, body) = post_api(
            &server,
            &key,
            &format!("/channels/{id}/test"),
            serde_json::json!({}),
        )
        .await;
        let text = body.to_string();
        assert!(text.contains(expected), "{text}");
        assert!(!text.contains("internal-detail-xyz"), "{text}");
        assert_eq!(target.hits(), 1);
    }
    assert_eq!(receiver.hits(), 0, "the redirect was not followed");
}

/// A channel's target is its secret (Slack) or names the network (webhook URL, SMTP host). An
/// Admin creates a Slack channel and a webhook to a port with nothing listening, then sends a
/// test on each, so both have a stored error. A read key and a Viewer see the channels' names,
/// kinds and failure times, but no URL, host, masked secret or error text, in the API list,
/// the API detail (with its deliveries) and both pages; an admin key still sees the URL.
/// The stored error never carries the URL, even for the Admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_targets_and_errors_are_for_admins_only() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let admin = api_key(&server, &s, &["read", "write", "admin"]).await;
    let reader = api_key(&server, &s, &["read"]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let slack_url = format!("{dead}/services/T000/B000/sekrit-token-abc");
    let hook_url = format!("{dead}/internal-hook-path");
    let mut ids = Vec::new();
    for body in [
        serde_json::json!({"name": "Team Slack", "kind": "slack", "secret": slack_url}),
        serde_json::json!({"name": "Ops hook", "kind": "webhook", "settings": {"url": hook_url}}),
    ] {
        let (status, ch) = post_api(&server, &admin, "/channels", body).await;
        assert_eq!(status, StatusCode::CREATED, "{ch}");
        let id = ch["id"].as_i64().unwrap();
        let (_, tested) = post_api(
            &server,
            &admin,
            &format!("/channels/{id}/test"),
            serde_json::json!({}),
        )
        .await;
        assert!(tested.to_string().contains("request failed"), "{tested}");
        assert!(!tested.to_string().contains("sekrit"), "{tested}");
        ids.push(id);
    }
    let leaks = |text: &str| {
        [
            "sekrit-token-abc",
            "internal-hook-path",
            "127.0.0.1",
            "request failed",
            "••••",
        ]
        .into_iter()
        .filter(|needle| text.contains(needle))
        .collect::<Vec<_>>()
    };
    let (_, list) = get_json(&server, &reader, "/api/v1/channels").await;
    assert_eq!(list["channels"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(leaks(&list.to_string()).is_empty(), "{list}");
    assert!(list["channels"][0]["last_failure_at"].is_string(), "{list}");
    for id in &ids {
        let (_, one) = get_json(&server, &reader, &format!("/api/v1/channels/{id}")).await;
        assert_eq!(one["deliveries"].as_array().map(Vec::len), Some(0));
        assert!(leaks(&one.to_string()).is_empty(), "{one}");
    }
    let (_, as_admin) = get_json(&server, &admin, &format!("/api/v1/channels/{}", ids[1])).await;
    assert_eq!(as_admin["settings"]["url"], hook_url.as_str());
    let error = as_admin["last_error"].as_str().unwrap();
    assert!(
        error.contains("request failed") && !error.contains("internal-hook-path"),
        "{error}"
    );

    add_member(&server, &s, "viewer@acme.test", "viewer").await;
    let viewer = login(&server, "viewer@acme.test", PASSWORD).await;
    for path in [
        format!("/o/{}/channels", s.slug),
        format!("/o/{}/channels/{}", s.slug, ids[0]),
        format!("/o/{}/channels/{}", s.slug, ids[1]),
    ] {
        let r = viewer.get(server.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("Ops hook") && html.contains("Team Slack"),
            "{path}"
        );
        assert!(leaks(&html).is_empty(), "{path}: {:?}", leaks(&html));
    }
}

/// Channel secrets are sealed in `meta.sqlite`: after saving a Slack channel (its URL is the
/// secret) and a webhook with a signing secret, neither plaintext is in the database file.
/// A row written before sealing (plaintext, `sealed = 0`, put back by hand) is sealed at the
/// next start and still delivers: its test send reaches the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_secrets_are_sealed_at_rest() {
    let receiver = Target::start("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let admin = api_key(&server, &s, &["read", "write", "admin"]).await;
    let slack = format!("{}/services/T1/B1/plain-slack-token", receiver.url);
    let (_, a) = post_api(
        &server,
        &admin,
        "/channels",
        serde_json::json!({"name": "s", "kind": "slack", "secret": slack}),
    )
    .await;
    let (_, b) = post_api(
        &server,
        &admin,
        "/channels",
        serde_json::json!({"name": "w", "kind": "webhook", "settings": {"url": format!("{}/w", receiver.url)},
                           "secret": "plain-signing-secret-0123"}),
    )
    .await;
    assert_eq!(a["secret"], "••••oken", "{a}");
    let hook_id = b["id"].as_i64().unwrap();
    let dir = server.stop().await;
    let db = dir.path().join("meta.sqlite");
    // The database and its write-ahead log, whichever holds the rows now.
    let mut bytes = std::fs::read(&db).unwrap();
    bytes.extend(std::fs::read(dir.path().join("meta.sqlite-wal")).unwrap_or_default());
    let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        holds("••••oken"),
        "the hint is stored, so the rows were read"
    );
    assert!(!holds("plain-slack-token") && !holds("plain-signing-secret-0123"));

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE notification_channels SET secret = 'legacy-signing-secret-42', sealed = 0 WHERE id = ?1",
        [hook_id],
    )
    .unwrap();
    drop(conn);
    let server = TestServer::start_with(dir, |_| {}).await;
    let (status, body) = post_api(
        &server,
        &admin,
        &format!("/channels/{hook_id}/test"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(receiver.hits(), 1);
    let (_, one) = get_json(&server, &admin, &format!("/api/v1/channels/{hook_id}")).await;
    assert_eq!(one["secret"], "••••t-42", "{one}");
    let dir = server.stop().await;
    let conn = rusqlite::Connection::open(dir.path().join("meta.sqlite")).unwrap();
    let (stored, sealed): (String, i64) = conn
        .query_row(
            "SELECT secret, sealed FROM notification_channels WHERE id = ?1",
            [hook_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(sealed, 1);
    assert!(!stored.contains("legacy-signing-secret-42"));
}

/// The login form carries a CSRF token (double submit: cookie and field): a post without the
/// cookie, or with a token from another browser, is 403 and signs nobody in; the same form
/// from the page works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_forms_need_their_csrf_token() {
    let server = TestServer::start().await;
    setup(&server, "Acme", "UTC").await;
    let fields = |token: &str| {
        vec![
            ("csrf", token.to_string()),
            ("email", OWNER_EMAIL.to_string()),
            ("password", PASSWORD.to_string()),
            ("next", "/".to_string()),
        ]
    };
    let other = no_redirects();
    let foreign = csrf(&other, &server.url("/login")).await;
    let victim = no_redirects();
    let own = csrf(&victim, &server.url("/login")).await;
    assert_ne!(own, foreign);
    for (client, token) in [
        (&no_redirects(), foreign.as_str()),
        (&victim, foreign.as_str()),
        (&victim, ""),
    ] {
        let r = client
            .post(server.url("/login"))
            .form(&fields(token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get("set-cookie").is_none());
    }
    let r = victim
        .post(server.url("/login"))
        .form(&fields(&own))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// Idle sessions end: with `auth.session_idle_hours = 1`, a session whose last use is moved
/// 3,601 s into the past (written into meta.sqlite: the test cannot wait an hour) is sent to
/// the login page, while one last used 3,500 s ago still works and is marked as seen again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.sqlite");
    let server = TestServer::start_with(dir, |c| c.auth.session_idle_hours = 1).await;
    let s = setup(&server, "Acme", "UTC").await;
    let overview = server.url(&format!("/o/{}/", s.slug));
    let age_sessions = |secs: i64| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE sessions SET last_seen_at = CAST(strftime('%s','now') AS INTEGER) - ?1",
            [secs],
        )
        .unwrap();
    };
    age_sessions(3_500);
    let r = s.client.get(&overview).send().await.unwrap();
    assert_eq!(r.url().path(), format!("/o/{}/", s.slug), "still signed in");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let idle: i64 = conn
        .query_row(
            "SELECT CAST(strftime('%s','now') AS INTEGER) - last_seen_at FROM sessions",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(idle < 60, "the use was recorded ({idle} s ago)");
    age_sessions(3_601);
    let r = s.client.get(&overview).send().await.unwrap();
    assert_eq!(r.url().path(), "/login", "an idle session is over");
}

/// Changing the password ends the user's other sessions and keeps the one that changed it:
/// two browsers sign in as the owner; a wrong current password is 422 and changes nothing;
/// after browser A changes it, B is sent to the login page, A still sees the overview, the
/// old password no longer signs in and the new one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_the_other_sessions() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let a = login(&server, OWNER_EMAIL, PASSWORD).await;
    let b = login(&server, OWNER_EMAIL, PASSWORD).await;
    let overview = server.url(&format!("/o/{}/", s.slug));
    let change = |client: &reqwest::Client, current: &str| {
        let (client, current) = (client.clone(), current.to_string());
        let url = server.url("/account/password");
        let page = server.url("/account");
        async move {
            let token = csrf(&client, &page).await;
            client
                .post(url)
                .form(&[
                    ("csrf", token.as_str()),
                    ("current_password", current.as_str()),
                    ("new_password", "a-brand-new-password-2"),
                    ("confirm_password", "a-brand-new-password-2"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = change(&a, "not-the-password").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("The current password is wrong.")
    );
    assert_eq!(
        b.get(&overview).send().await.unwrap().url().path(),
        format!("/o/{}/", s.slug)
    );

    let r = change(&a, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("2 other session(s) signed out"), "{html}");
    assert_eq!(
        b.get(&overview).send().await.unwrap().url().path(),
        "/login"
    );
    assert_eq!(
        s.client.get(&overview).send().await.unwrap().url().path(),
        "/login"
    );
    assert_eq!(
        a.get(&overview).send().await.unwrap().url().path(),
        format!("/o/{}/", s.slug)
    );
    let old = no_redirects();
    let token = csrf(&old, &server.url("/login")).await;
    let r = old
        .post(server.url("/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("email", OWNER_EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    login(&server, OWNER_EMAIL, "a-brand-new-password-2").await;
}

/// Every answer (page, API, error, asset) carries the strict CSP with `frame-ancestors 'none'`,
/// `nosniff`, `Referrer-Policy` and `X-Frame-Options`; pages and API answers are `no-store`
/// (the API-keys page shows a new key once), assets keep their own caching. HSTS appears only
/// when `server.public_url` is https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_on_every_answer() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read"]).await;
    let client = reqwest::Client::new();
    let answers = [
        s.client
            .get(server.url(&format!("/o/{}/api-keys", s.slug)))
            .send()
            .await
            .unwrap(),
        client
            .get(server.url("/api/v1/metrics"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
        client
            .get(server.url("/api/v1/metrics"))
            .send()
            .await
            .unwrap(),
        client
            .get(server.url("/no-such-page"))
            .send()
            .await
            .unwrap(),
        client
            .get(server.url("/assets/app.js"))
            .send()
            .await
            .unwrap(),
    ];
    for r in &answers {
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.get("strict-transport-security").is_none());
    }
    for r in &answers[..4] {
        assert_eq!(r.headers()["cache-control"], "no-store", "{}", r.url());
    }
    assert!(
        answers[4].headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir, |c| {
        c.server.public_url = "https://vitals.example.com".into()
    })
    .await;
    let r = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
}

/// Nobody joins an org without accepting. Bea, Admin of Beta, invites Carl, who already has
/// an account (a Viewer of Acme):
/// - invited but not yet accepted, Carl cannot open Beta (404);
/// - without a session the link sends to the login page and back; another signed-in user
///   (Bea) gets 403 and no join form, and her post is refused; Carl's "Join" adds him with the
///   invited role (Analyst);
/// - the link then no longer works (single use), a revoked link does not work, and an
///   expired one (its expiry moved 8 days back in meta.sqlite) does not either;
/// - Acme's owner cannot revoke Beta's invitation through Acme (404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_only_by_accepting_an_invitation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.sqlite");
    let server = TestServer::start_with(dir, |_| {}).await;
    let acme = setup(&server, "Acme", "UTC").await;
    let beta = create_org(&server, &acme, "Beta", "beta").await;
    add_member(&server, &beta, "bea@beta.test", "admin").await;
    add_member(&server, &acme, "carl@acme.test", "viewer").await;
    let bea = Session {
        client: login(&server, "bea@beta.test", PASSWORD).await,
        slug: "beta".into(),
    };
    let carl = login(&server, "carl@acme.test", PASSWORD).await;
    let beta_home = server.url("/o/beta/");
    assert_eq!(
        carl.get(&beta_home).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let link = invite(&server, &bea, "carl@acme.test", "analyst").await;
    assert_eq!(
        carl.get(&beta_home).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "invited is not joined"
    );
    let path = link.trim_start_matches(&server.url(""));
    let anon = no_redirects().get(&link).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    let to = anon.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("/login?next=") && to.contains("invite"),
        "{to}"
    );

    // Someone else, signed in, cannot use it.
    let other = login(&server, "bea@beta.test", PASSWORD).await;
    let r = other.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let token = extract(&r.text().await.unwrap(), "name=\"csrf\" value=\"", "\"");
    assert!(token.is_none(), "no join form for the wrong user");
    let bea_csrf = csrf(&other, &server.url("/account")).await;
    let r = other
        .post(&link)
        .form(&[("csrf", bea_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Carl accepts through the login page's `next`.
    let html = carl.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("Join Beta") && html.contains("Analyst"),
        "{html}"
    );
    let token = extract(&html, "name=\"csrf\" value=\"", "\"").unwrap();
    let r = carl
        .post(&link)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/o/beta/");
    assert_eq!(
        carl.get(&beta_home).send().await.unwrap().status(),
        StatusCode::OK
    );
    let members = bea
        .client
        .get(server.url("/o/beta/members"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(members.contains("carl@acme.test"), "{members}");
    // Single use.
    let r = carl
        .post(&link)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");

    // Revoked and expired links.
    let revoked = invite(&server, &bea, "dora@beta.test", "viewer").await;
    let page = bea
        .client
        .get(server.url("/o/beta/members"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = extract(&page, "/o/beta/invitations/", "/revoke").expect("pending invitation listed");
    let acme_csrf = csrf(&acme.client, &server.url("/o/acme/members")).await;
    let r = acme
        .client
        .post(server.url(&format!("/o/acme/invitations/{id}/revoke")))
        .form(&[("csrf", acme_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "another org's invitation"
    );
    let bea_token = csrf(&bea.client, &server.url("/o/beta/members")).await;
    bea.client
        .post(server.url(&format!("/o/beta/invitations/{id}/revoke")))
        .form(&[("csrf", bea_token.as_str())])
        .send()
        .await
        .unwrap();
    let fresh = browser();
    assert_eq!(
        fresh.get(&revoked).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let expiring = invite(&server, &bea, "erin@beta.test", "viewer").await;
    assert_eq!(
        fresh.get(&expiring).send().await.unwrap().status(),
        StatusCode::OK
    );
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE invitations SET expires_at = expires_at - 8 * 86400 WHERE email = 'erin@beta.test'", [])
        .unwrap();
    assert_eq!(
        fresh.get(&expiring).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

/// `vitals serve` as its own process, so its peak memory (VmHWM) is its own.
struct ServeProcess {
    base: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Served for ServeProcess {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl ServeProcess {
    async fn start() -> ServeProcess {
        // This process opens no App, so reqwest's TLS provider is chosen here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vitals"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .env("VITALS_STORAGE__DUCKDB_MEMORY_LIMIT", "256MB")
            .kill_on_drop(true)
            .spawn()
            .expect("start vitals serve");
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/healthz");
        poll_until(
            "vitals serve to answer",
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(100),
            || async {
                reqwest::get(&health)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        )
        .await;
        ServeProcess {
            base,
            child,
            _dir: dir,
        }
    }

    /// Peak resident memory so far, in MiB.
    fn peak_mib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib / 1024
    }
}

/// The worst case: a 256 MiB CSV (the largest accepted, `ingest.max_import_bytes`)
/// that is one line of commas under a `timestamp,revenue` header. Held in memory and split
/// into a `String` per field, it cost gigabytes; spooled to disk and read one record at a time
/// (fields beyond the header's counted, not kept) the server's peak RSS grows by less than
/// 64 MiB over its peak before the upload, and the answer names the row: 422, 1 row, 0 points,
/// "has 268435438 fields" (256 MiB − 18 header bytes − 1 newline = 268,435,437 commas, so one
/// field more). One byte more than the limit is 413 and leaves no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_csv_upload_costs_bounded_memory() {
    let server = ServeProcess::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["write"]).await;
    let before = server.peak_mib();
    let header = "timestamp,revenue\n";
    let total: usize = 256 * 1024 * 1024;
    let commas = total - header.len() - 1;
    let send = |commas: usize| {
        let chunk = axum::body::Bytes::from(vec![b','; 1 << 20]);
        let mut parts: Vec<Result<axum::body::Bytes, std::io::Error>> =
            vec![Ok(axum::body::Bytes::from_static(header.as_bytes()))];
        let mut left = commas;
        while left > 0 {
            let n = left.min(chunk.len());
            parts.push(Ok(chunk.slice(..n)));
            left -= n;
        }
        parts.push(Ok(axum::body::Bytes::from_static(b"\n")));
        reqwest::Client::new()
            .post(server.url("/api/v1/imports/csv"))
            .bearer_auth(&key)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
            .send()
    };
    let r = send(commas).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["rows"].as_u64(), body["imported_points"].as_u64()),
        (Some(1), Some(0)),
        "{body}"
    );
    let reason = body["problems"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("has {} fields", commas + 1)),
        "{reason}"
    );
    let after = server.peak_mib();
    println!("peak RSS of vitals serve: {before} MiB before, {after} MiB after a 256 MiB CSV");
    assert!(after < before + 64, "peak RSS {before} MiB → {after} MiB");

    let r = send(commas + 1).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let uploads = server._dir.path().join("uploads");
    let left: usize = std::fs::read_dir(&uploads)
        .unwrap()
        .flatten()
        .map(|org| std::fs::read_dir(org.path()).unwrap().count())
        .sum();
    assert_eq!(left, 0, "no spooled file is left");
}

/// Five wrong logins (each for a different unknown address, so only the per-address count
/// grows) from client 203.0.113.7 behind a proxy on loopback:
/// - with `server.trusted_proxies = ["127.0.0.1"]` only that client is locked out (429); the
///   owner logging in from 198.51.100.9 gets in, and the audit log records 198.51.100.9;
/// - without it the header is not believed: every request comes from 127.0.0.1, so the
///   same five failures lock the owner out too (this is the lock-out the setting prevents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    for trusted in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_with(dir, |c| {
            c.auth.login_max_failures = 5;
            if trusted {
                c.server.trusted_proxies = vec!["127.0.0.1".into()];
            }
        })
        .await;
        let s = setup(&server, "Acme", "UTC").await;
        let client = no_redirects();
        let token = csrf(&client, &server.url("/login")).await;
        let attempt = |email: String, password: &'static str, from: &'static str| {
            let (client, token, url) = (client.clone(), token.clone(), server.url("/login"));
            async move {
                client
                    .post(url)
                    .header("x-forwarded-for", format!("10.9.9.9, {from}"))
                    .form(&[
                        ("csrf", token.as_str()),
                        ("email", email.as_str()),
                        ("password", password),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        for i in 0..5 {
            let status = attempt(
                format!("nobody{i}@x.test"),
                "wrong-password!",
                "203.0.113.7",
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let locked = attempt("nobody9@x.test".into(), "wrong-password!", "203.0.113.7").await;
        assert_eq!(locked, StatusCode::TOO_MANY_REQUESTS);
        let owner = attempt(OWNER_EMAIL.into(), PASSWORD, "198.51.100.9").await;
        if trusted {
            assert_eq!(
                owner,
                StatusCode::SEE_OTHER,
                "another client is not locked out"
            );
            let audit = s
                .client
                .get(server.url(&format!("/o/{}/audit", s.slug)))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                audit.contains("198.51.100.9"),
                "the audit log names the client"
            );
        } else {
            assert_eq!(
                owner,
                StatusCode::TOO_MANY_REQUESTS,
                "one address for everyone"
            );
        }
        server.stop().await;
    }
}

/// Eight maximal batches (50,000 points each, the `ingest.max_points_per_request` default;
/// about 3.6 MB of JSON) sent at once do not stop the server answering: `/healthz`, probed
/// one request after another from before the first batch, answers 200 while batches are
/// still unanswered (their parsing runs on the blocking pool, at most one core's worth at a
/// time), and all 400,000 points are stored. How fast it answers is measured by
/// `cargo bench --bench ingest`, not here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_batches_in_parallel_leave_healthz_answering() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let batch = |b: i64| {
        let points: Vec<serde_json::Value> = (0..50_000)
            .map(|i| {
                serde_json::json!({"metric": "revenue", "timestamp": 1_700_000_000 + (b * 50_000 + i) * 60,
                                   "value": i % 97, "dimensions": {"region": "eu"}})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "points": points })).unwrap()
    };
    let bodies: Vec<Vec<u8>> = (0..8).map(batch).collect();
    let answered = Arc::new(AtomicUsize::new(0));
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let prober = {
        let (url, answered, probing) = (server.url("/healthz"), answered.clone(), probing.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut during = 0;
            while probing.load(Ordering::SeqCst) {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                if answered.load(Ordering::SeqCst) < 8 {
                    during += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            during
        })
    };
    let client = reqwest::Client::new();
    let sends = bodies.into_iter().map(|body| {
        let (client, url, key, answered) = (
            client.clone(),
            server.url("/api/v1/metrics"),
            key.clone(),
            answered.clone(),
        );
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            answered.fetch_add(1, Ordering::SeqCst);
            r.status()
        }
    });
    let statuses = futures::future::join_all(sends).await;
    probing.store(false, Ordering::SeqCst);
    let during = prober.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert!(
        during > 0,
        "no /healthz answer came while batches were unanswered"
    );
    // Every point stored: per batch Σ (i mod 97) for i < 50,000 = 515 × (0+…+96) + (0+…+44)
    // = 515 × 4,656 + 990 = 2,398,830; eight batches 19,190,640 (one minute apart from
    // 2023-11-14 22:13 UTC, so all within Nov 2023 – Aug 2024).
    let (_, series) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?bucket=month&agg=sum&from=2023-11-01&to=2024-09-01",
    )
    .await;
    let total: f64 = values(&series).into_iter().flatten().sum();
    assert_eq!(total, 19_190_640.0, "{series}");
}
