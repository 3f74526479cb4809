//! CSV import end to end: the API (good file, bad rows with line numbers and nothing written,
//! valid rows only, BOM, quoted commas, semicolons with decimal commas, re-import without double
//! counting) and the `vitals import csv` command against the running server.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

async fn import(server: &TestServer, key: &str, query: &str, body: &[u8]) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/imports/csv?{query}")))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Revenue per day (sum) between two dates, as the series API reports it.
async fn daily(server: &TestServer, key: &str, from: &str, to: &str) -> Vec<Option<f64>> {
    let (status, body) = get_json(
        server,
        key,
        &format!("/api/v1/metrics/revenue/series?from={from}&to={to}&bucket=day"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    values(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_are_imported_whole_or_not_at_all_and_reimports_replace() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;

    // Bad rows: reported by line, nothing written.
    let bad = "timestamp,revenue,region\n2024-03-01,100,eu\n2024-03-02,abc,eu\n2024-03-03,300\n";
    let (status, body) = import(&server, &key, "dimensions=region", bad.as_bytes()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_rows");
    let lines: Vec<i64> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4]);
    assert!(
        body["problems"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("\"abc\" is not a number")
    );
    assert_eq!(body["imported_points"], 0);
    assert_eq!(
        daily(&server, &key, "2024-03-01", "2024-03-04").await,
        vec![None, None, None]
    );

    // The same file, valid rows only.
    let (status, body) = import(
        &server,
        &key,
        "dimensions=region&valid_only=true",
        bad.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["imported_points"].as_i64(),
            body["skipped_rows"].as_i64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(
        daily(&server, &key, "2024-03-01", "2024-03-04").await,
        vec![Some(100.0), None, None]
    );

    // A BOM, CRLF, quoted commas in a dimension; then the same file again: no double count.
    let good = "\u{feff}date,revenue,region\r\n2024-03-02,200.5,\"us, east\"\r\n2024-03-02,50,eu\r\n2024-03-03,300,eu\r\n";
    for _ in 0..2 {
        let (status, body) = import(&server, &key, "dimensions=region", good.as_bytes()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["imported_points"], 3);
    }
    assert_eq!(
        daily(&server, &key, "2024-03-01", "2024-03-04").await,
        vec![Some(100.0), Some(250.5), Some(300.0)]
    );
    let (_, grouped) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?from=2024-03-02&to=2024-03-03&bucket=day&group_by=region",
    )
    .await;
    let groups: Vec<&str> = grouped["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["group"].as_str())
        .collect();
    assert_eq!(groups, vec!["eu", "us, east"]);

    // Semicolons, decimal commas, a metric-name column, local time: 23:30 in Berlin on 3 March
    // is 22:30 UTC the same day; a correction of 3 March replaces the earlier 300.
    let long = "Zeit;Kennzahl;Wert\n2024-03-03 23:30;revenue;1234,5\n";
    let (status, body) = import(
        &server,
        &key,
        "timestamp_column=Zeit&metric_column=Kennzahl&value_column=Wert&decimal=comma&time_zone=Europe/Berlin",
        long.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delimiter"], ";");
    assert_eq!(
        daily(&server, &key, "2024-03-03", "2024-03-04").await,
        vec![Some(300.0 + 1234.5)]
    );

    // Problems with the request itself are named.
    for (query, body, field_or_code) in [
        ("delimiter=pipe", "timestamp,revenue\n", "delimiter"),
        ("time_zone=Mars/Base", "timestamp,revenue\n", "time_zone"),
        ("colour=red", "timestamp,revenue\n", "colour"),
    ] {
        let (status, resp) = import(&server, &key, query, body.as_bytes()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {resp}");
        assert_eq!(resp["error"]["field"], field_or_code, "{resp}");
    }
    let (status, resp) = import(&server, &key, "", b"timestamp,sales\n2024-01-01,1\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"sales\" is not a metric")
    );
    let (status, resp) = import(&server, &key, "", b"timestamp,revenue\n2024-01-01,\xff\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(resp["error"]["code"], "not_utf8");

    // A read-only key cannot import; another org's key writes to its own org only.
    let read_only = api_key(&server, &a, &["read"]).await;
    let (status, _) = import(&server, &read_only, "", good.as_bytes()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    let (status, _) = import(&server, &key_b, "dimensions=region", good.as_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        daily(&server, &key, "2024-03-02", "2024-03-03").await,
        vec![Some(250.5)],
        "org A unchanged by B's import"
    );
    assert_eq!(
        daily(&server, &key_b, "2024-03-01", "2024-03-03").await,
        vec![None, Some(250.5)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_command_uploads_and_reports_line_numbers() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sales.csv");
    std::fs::write(
        &file,
        "timestamp;revenue\n2024-05-01;10\n2024-05-02;oops\n2024-05-03;30\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_vitals");
    let run = |org: &str, extra: &[&str]| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["import", "csv"])
            .arg(&file)
            .args(["--org", org, "--server", &server.url("")])
            .args(extra)
            .env("VITALS_API_KEY", &key);
        cmd.output().unwrap()
    };
    let refused = run(&a.slug, &[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("line 3: revenue value \"oops\" is not a number"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(
        daily(&server, &key, "2024-05-01", "2024-05-04").await,
        vec![None, None, None]
    );

    let ok = run(&a.slug, &["--valid-only"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("imported 2 points from 3 rows (1 rows skipped)"),
        "{out}"
    );
    assert_eq!(
        daily(&server, &key, "2024-05-01", "2024-05-04").await,
        vec![Some(10.0), None, Some(30.0)]
    );

    let wrong_org = run("someone-else", &[]);
    assert!(!wrong_org.status.success());
    let err = String::from_utf8_lossy(&wrong_org.stderr);
    assert!(
        err.contains("belongs to organisation \"acme\", not \"someone-else\""),
        "{err}"
    );
    server.stop().await;
}

/// A multipart/form-data body with text fields and one file.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str)>) -> (String, Vec<u8>) {
    let boundary = "vitals-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((file_name, content)) = file {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes());
        body.extend(content.as_bytes());
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_page_previews_with_line_numbers_then_imports_the_upload() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read"]).await;
    let page = server.url(&format!("/o/{}/import", a.slug));
    let token = csrf(&a.client, &page).await;
    let csv = "Datum;Umsatz;Region\n01/06/2024;1.234,5;eu\n02/06/2024;x;eu\n03/06/2024;99;us\n";
    let fields = [
        ("csrf", token.as_str()),
        ("action", "preview"),
        ("timestamp_column", "Datum"),
        ("columns", "Umsatz:revenue"),
        ("dimensions", "Region"),
        ("delimiter", "auto"),
        ("decimal", "point"),
        ("time_zone", "UTC"),
    ];
    let post = |fields: Vec<(&str, String)>, file: Option<(&str, &str)>| {
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (ct, body) = multipart(&borrowed, file);
        a.client
            .post(&page)
            .header("content-type", ct)
            .header("origin", server.url("").trim_end_matches('/'))
            .body(body)
            .send()
    };
    let owned = |f: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        f.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };

    // Preview with a decimal point setting: "1.234,5" is a problem, reported by line.
    let r = post(owned(&fields), Some(("umsatz.csv", csv)))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("line 2: Umsatz value &#34;1.234,5&#34; is not a number"),
        "{html}"
    );
    assert!(html.contains("line 3: Umsatz value"), "{html}");
    let upload = extract(&html, "name=\"upload\" value=\"", "\"").expect("upload token");
    assert!(!upload.is_empty());

    // Same upload, decimal comma: only line 3 is bad; importing everything is refused.
    let mut next = owned(&fields);
    next.retain(|(k, _)| *k != "decimal" && *k != "action");
    next.push(("decimal", "comma".into()));
    next.push(("upload", upload.clone()));
    next.push(("file_name", "umsatz.csv".into()));
    let mut all = next.clone();
    all.push(("action", "import".into()));
    let r = post(all, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Nothing was imported: 1 of 3 rows have problems"),
        "{html}"
    );
    let (_, series) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?from=2024-06-01&to=2024-06-04&bucket=day",
    )
    .await;
    assert_eq!(values(&series), vec![None, None, None]);

    // Valid rows only.
    let mut valid = next.clone();
    valid.push(("action", "import_valid".into()));
    let r = post(valid, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Imported 2 points from 3 rows; 1 rows with problems were skipped."),
        "{html}"
    );
    let (_, series) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?from=2024-06-01&to=2024-06-04&bucket=day",
    )
    .await;
    assert_eq!(values(&series), vec![Some(1234.5), None, Some(99.0)]);

    // The upload is gone after the import; a viewer cannot import.
    let mut again = next.clone();
    again.push(("action", "import".into()));
    let r = post(again, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("no longer here"));
    add_member(&server, &a, "viewer@acme.test", "viewer").await;
    let viewer = login(&server, "viewer@acme.test", PASSWORD).await;
    let r = viewer.get(&page).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_file_imports_completely() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.server.request_timeout_secs = 300;
    })
    .await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    // One point a minute from 1 Jan 2024: 1,000,000 rows, values 0..999 repeating.
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let mut csv = String::with_capacity(40_000_000);
    csv.push_str("timestamp,revenue\n");
    for i in 0..1_000_000i64 {
        let t = start + chrono::Duration::minutes(i);
        csv.push_str(&format!("{},{}\n", t.format("%Y-%m-%d %H:%M:%S"), i % 1000));
    }
    let (status, body) = import(&server, &key, "", csv.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["imported_points"], 1_000_000);
    assert_eq!(body["rows"], 1_000_000);
    // 1 Jan 2024 holds minutes 0..1439: 0 + … + 999 = 499,500, then 0 + … + 439 = 96,580.
    assert_eq!(
        daily(&server, &key, "2024-01-01", "2024-01-02").await,
        vec![Some(596_080.0)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_csv_files_and_metric_batches_get_413_and_write_nothing() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.ingest.max_import_bytes = 4096;
        c.ingest.max_body_bytes = 2048;
    })
    .await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let mut csv = String::from("timestamp,revenue\n");
    for d in 1..=600 {
        csv.push_str(&format!("2024-0{}-{:02},1\n", 1 + (d % 9), 1 + (d % 28)));
    }
    assert!(csv.len() > 4096);
    let (status, body) = import(&server, &key, "", csv.as_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "file_too_large");
    let (status, body) = post_points(
        &server,
        &key,
        &serde_json::json!({"points": vec![serde_json::json!({"metric": "revenue", "timestamp": "2024-01-01T00:00:00Z", "value": 1}); 200]}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(
        daily(&server, &key, "2024-01-01", "2024-01-02").await,
        vec![None]
    );
    server.stop().await;
}
