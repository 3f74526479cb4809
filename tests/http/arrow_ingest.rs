//! `POST /api/v1/metrics` with an Arrow IPC stream (`application/vnd.apache.arrow.stream`):
//! it stores what the same points as JSON store, re-sent points replace, a bad stream names
//! its column or its rows and stores nothing, and no org sees another's points.

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray, TimestampSecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

/// (metric, Unix seconds, value, region)
type Row = (&'static str, i64, f64, Option<&'static str>);

fn stream(rows: &[Row], batch_rows: usize) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            false,
        ),
        Field::new("value", DataType::Float64, false),
        Field::new("region", DataType::Utf8, true),
    ]));
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, &schema).unwrap();
    for chunk in rows.chunks(batch_rows) {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.0))),
                Arc::new(TimestampSecondArray::from_iter_values(
                    chunk.iter().map(|r| r.1),
                )),
                Arc::new(Float64Array::from_iter_values(chunk.iter().map(|r| r.2))),
                Arc::new(chunk.iter().map(|r| r.3).collect::<StringArray>()),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    out
}

/// One record batch as an Arrow IPC stream.
fn ipc(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

fn as_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|(m, ts, v, region)| {
                let mut p = json!({"metric": m, "timestamp": ts, "value": v});
                if let Some(r) = region {
                    p["dimensions"] = json!({ "region": r });
                }
                p
            })
            .collect(),
    )
}

async fn post_arrow(server: &TestServer, key: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(server.url("/api/v1/metrics"))
        .bearer_auth(key)
        .header("content-type", "application/vnd.apache.arrow.stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

const DAY: i64 = 86_400;
/// 2026-11-01T00:00:00Z
const NOV_1: i64 = 1_793_491_200;

/// Revenue every six hours from Nov 1 to Nov 3 (eu 10, us 1), expenses 50 at noon each day
/// (no region): 3 × (8 + 1) = 27 points, sent in batches of 10.
fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for day in 0..3 {
        for hour in [0, 6, 12, 18] {
            let ts = NOV_1 + day * DAY + hour * 3600;
            rows.push(("revenue", ts, 10.0, Some("eu")));
            rows.push(("revenue", ts, 1.0, Some("us")));
        }
        rows.push(("expenses", NOV_1 + day * DAY + 12 * 3600, 50.0, None));
    }
    rows
}

const QUESTIONS: &[&str] = &[
    "/api/v1/metrics/revenue/series?from=2026-11-01&to=2026-11-04&bucket=day&group_by=region",
    "/api/v1/metrics/revenue/points?from=2026-11-01&to=2026-11-04&dim.region=us",
    "/api/v1/metrics/expenses/series?from=2026-11-01&to=2026-11-04&bucket=day",
];

async fn answers(server: &TestServer, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for path in QUESTIONS {
        let (status, body) = get_json(server, key, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        out.push(body);
    }
    out
}

async fn eu_daily(server: &TestServer, key: &str) -> Vec<Option<f64>> {
    let (status, body) = get_json(
        server,
        key,
        "/api/v1/metrics/revenue/series?from=2026-11-01&to=2026-11-04&bucket=day&agg=sum&dim.region=eu",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    values(&body)
}

/// Org A gets the 27 points as an Arrow stream (3 record batches), org B the same as JSON:
/// every answer is the same, eu revenue is 4 × 10 = 40 a day, and org C (nothing sent) sees
/// no revenue. Then A re-sends eu at Nov 2 00:00 as 100 (Arrow): Nov 2 is 3 × 10 + 100 = 130,
/// the other days stay 40, and B is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrow_stream_stores_what_the_same_json_stores() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let c = create_org(&server, &a, "Gamma", "gamma").await;
    let key_a = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    let key_c = api_key(&server, &c, &["read"]).await;

    let (status, body) = post_arrow(&server, &key_a, stream(&rows(), 10)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 27);
    assert_eq!(body["metrics"], json!(["expenses", "revenue"]));
    let (status, body) = post_points(&server, &key_b, &as_json(&rows())).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let from_arrow = answers(&server, &key_a).await;
    assert_eq!(from_arrow, answers(&server, &key_b).await);
    assert_eq!(eu_daily(&server, &key_a).await, vec![Some(40.0); 3]);
    assert_eq!(
        eu_daily(&server, &key_c)
            .await
            .into_iter()
            .flatten()
            .count(),
        0,
        "org C sees none of it"
    );

    let (status, body) = post_arrow(
        &server,
        &key_a,
        stream(&[("revenue", NOV_1 + DAY, 100.0, Some("eu"))], 10),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        eu_daily(&server, &key_a).await,
        vec![Some(40.0), Some(130.0), Some(40.0)]
    );
    assert_eq!(eu_daily(&server, &key_b).await, vec![Some(40.0); 3]);
    server.stop().await;
}

/// Refused, each storing nothing (A's answers stay as before): a stream whose `timestamp`
/// is text (400, field `timestamp`); one whose row 1 names an unknown metric and whose row 2
/// has no value (422, `points[1].metric` first, both rows in the details); bytes that are no
/// Arrow stream (400); and a write with a read-only key (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_stream_names_its_column_or_rows_and_stores_nothing() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let reader = api_key(&server, &a, &["read"]).await;
    let (status, body) = post_arrow(&server, &key, stream(&rows(), 27)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = answers(&server, &key).await;

    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("timestamp", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
    ]));
    let text_times = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["revenue"])),
            Arc::new(StringArray::from(vec!["2026-11-02T00:00:00Z"])),
            Arc::new(Float64Array::from(vec![5.0])),
        ],
    )
    .unwrap();
    let (status, err) = post_arrow(&server, &key, ipc(&text_times)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["field"], "timestamp");

    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            false,
        ),
        Field::new("value", DataType::Float64, true),
    ]));
    let bad_rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["revenue", "visits", "revenue"])),
            Arc::new(TimestampSecondArray::from(vec![NOV_1, NOV_1, NOV_1 + 3600])),
            Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), None])),
        ],
    )
    .unwrap();
    let (status, err) = post_arrow(&server, &key, ipc(&bad_rows)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "points[1].metric");
    let details: Vec<(i64, &str)> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["index"].as_i64().unwrap(), d["field"].as_str().unwrap()))
        .collect();
    assert_eq!(details, vec![(1, "metric"), (2, "value")]);

    let (status, err) = post_arrow(&server, &key, b"metric,timestamp,value\n".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = post_arrow(&server, &reader, stream(&rows(), 27)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    assert_eq!(answers(&server, &key).await, before);
    server.stop().await;
}

/// With at most 10 points a request and 16 KiB a body: the 27-point stream is refused (413,
/// field `points`), and so is a 20 KiB body before it is read as a stream (413
/// `body_too_large`); nothing of either is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_stream_is_refused_with_nothing_stored() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.ingest.max_points_per_request = 10;
        c.ingest.max_body_bytes = 16 * 1024;
    })
    .await;
    let a = setup(&server, "Alpha", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let (status, err) = post_arrow(&server, &key, stream(&rows(), 27)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["field"], "points");
    let mut huge = stream(&rows()[..9], 9);
    huge.resize(20 * 1024, 0);
    let (status, err) = post_arrow(&server, &key, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["code"], "body_too_large");
    assert_eq!(
        eu_daily(&server, &key).await.into_iter().flatten().count(),
        0,
        "nothing stored"
    );
    server.stop().await;
}
