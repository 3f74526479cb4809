//! Fuzz targets for every parser a request reaches: time parameters, the series query string,
//! ingest batches and CSV files. Each case is a valid input mutated at random (bytes inserted,
//! deleted, duplicated, digits swapped for extreme numbers) or random text over the parser's
//! alphabet, from a fixed seed so a failure is reproducible. A case fails on any panic or on
//! a broken property; the input is printed.
//!
//! `cargo test --release --lib fuzz` runs 2,000 cases per target;
//! `VITALS_FUZZ_CASES=100000 cargo test --release --lib fuzz -- --nocapture` the long run.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::csv_import::{self, Mapping};
use crate::domain::ingest::{self, Limits};
use crate::domain::timebucket::{self, Bucket, EARLIEST_MICROS, LATEST_MICROS};
use crate::web::api::reads;

fn cases() -> usize {
    std::env::var("VITALS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Berlin",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Australia/Lord_Howe",
];

const EXTREMES: [&str; 14] = [
    "0",
    "-1",
    "1969",
    "1970",
    "2199",
    "2200",
    "9999",
    "-262143",
    "+262142",
    "262143",
    "99999999999999999999",
    "-9223372036854775808",
    "1e308",
    "NaN",
];

struct Mutator {
    rng: StdRng,
    alphabet: &'static [u8],
}

impl Mutator {
    fn new(seed: u64, alphabet: &'static [u8]) -> Mutator {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
            alphabet,
        }
    }

    fn zone(&mut self) -> Tz {
        ZONES[self.rng.gen_range(0..ZONES.len())]
            .parse()
            .unwrap_or(Tz::UTC)
    }

    /// A seed mutated 1–4 times, or (one case in eight) random bytes over the alphabet.
    fn input(&mut self, seeds: &[&[u8]]) -> Vec<u8> {
        if self.rng.gen_ratio(1, 8) {
            let len = self.rng.gen_range(0..64);
            return (0..len).map(|_| self.pick()).collect();
        }
        let mut s = seeds[self.rng.gen_range(0..seeds.len())].to_vec();
        for _ in 0..self.rng.gen_range(1..=4) {
            let at = self.rng.gen_range(0..=s.len());
            match self.rng.gen_range(0..6) {
                0 => s.insert(at, self.pick()),
                1 if at < s.len() => {
                    let end = self.rng.gen_range(at..=s.len().min(at + 8));
                    s.drain(at..end);
                }
                2 if at < s.len() => {
                    let end = self.rng.gen_range(at..=s.len().min(at + 16));
                    let copy: Vec<u8> = s[at..end].to_vec();
                    s.splice(at..at, copy);
                }
                3 => {
                    // A run of digits becomes an extreme number.
                    let start = s[..at]
                        .iter()
                        .rposition(|b| !b.is_ascii_digit())
                        .map_or(0, |p| p + 1);
                    let end = s[at..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(s.len(), |p| at + p);
                    let extreme = EXTREMES[self.rng.gen_range(0..EXTREMES.len())];
                    s.splice(start..end, extreme.bytes());
                }
                4 if at < s.len() => s[at] = self.rng.r#gen(),
                _ => s.insert(at, self.pick()),
            }
        }
        s
    }

    fn pick(&mut self) -> u8 {
        self.alphabet[self.rng.gen_range(0..self.alphabet.len())]
    }
}

/// Runs `check` on `cases()` inputs; a panic or an `Err` fails with the input.
fn run(
    name: &str,
    seed: u64,
    mut case: impl FnMut(&mut Mutator) -> (String, Result<(), String>),
    alphabet: &'static [u8],
) {
    let mut m = Mutator::new(seed, alphabet);
    let n = cases();
    for i in 0..n {
        let outcome = catch_unwind(AssertUnwindSafe(|| case(&mut m)));
        match outcome {
            Ok((_, Ok(()))) => {}
            Ok((input, Err(broken))) => panic!("{name} case {i}: {broken}\ninput: {input}"),
            Err(_) => panic!("{name} case {i} panicked (seed {seed}); rerun with --nocapture"),
        }
    }
    println!("fuzz {name}: {n} cases, no panic, every property held");
}

fn in_range(micros: i64) -> bool {
    (EARLIEST_MICROS..LATEST_MICROS).contains(&micros)
}

const TIME_ALPHABET: &[u8] = b"0123456789-:+TZtz. /eE\xc3\xa9";

#[test]
fn fuzz_time_parsers() {
    let seeds: &[&[u8]] = &[
        b"2026-03-01",
        b"2026-03-01T12:30:00Z",
        b"2026-03-29T02:30:00+01:00",
        b"1970-01-01T00:00:00Z",
        b"2199-12-31T23:59:59.999999-12:00",
        b"2024-02-29 14:30",
        b"01/03/2024",
        b"1709251200",
    ];
    let formats = [
        None,
        Some("%d.%m.%Y %H:%M"),
        Some("%s"),
        Some("%Y%j"),
        Some("%Q%%%"),
    ];
    run(
        "time parsers",
        1,
        |m| {
            let input = String::from_utf8_lossy(&m.input(seeds)).into_owned();
            let tz = m.zone();
            let format = formats[m.rng.gen_range(0..formats.len())];
            let mut result = Ok(());
            if let Some(t) = timebucket::parse_time(&input, tz)
                && !in_range(t)
            {
                result = Err(format!("parse_time gave {t}, outside the accepted range"));
            }
            if let Ok(t) = csv_import::parse_timestamp(&input, format, tz)
                && !in_range(t)
            {
                result = Err(format!(
                    "parse_timestamp gave {t}, outside the accepted range"
                ));
            }
            (format!("{input:?} in {tz} with {format:?}"), result)
        },
        TIME_ALPHABET,
    );
}

const QUERY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789=&.%+-:TZ_";

#[test]
fn fuzz_series_parameters() {
    let seeds: &[&[u8]] = &[
        b"from=2026-01-01&to=2026-02-01&bucket=day",
        b"bucket=month&from=-262143-01-02&to=%2B262142-11-15",
        b"bucket=hour&from=1970-01-02&to=2199-12-31&agg=sum",
        b"group_by=region&dim.region=eu&dim.plan=pro&bucket=week",
        b"from=2026-03-29T00%3A00%3A00%2B01%3A00&to=2026-03-30&bucket=hour",
        b"limit=100&from=2026-01-01",
    ];
    let now = 1_780_000_000_000_000;
    run(
        "series parameters",
        2,
        |m| {
            let input = String::from_utf8_lossy(&m.input(seeds)).into_owned();
            let tz = m.zone();
            let accepted = ["from", "to", "bucket", "agg", "group_by", "dim", "limit"];
            let mut result = Ok(());
            if let Ok(p) = reads::parse_read_params(Some(&input), tz, now, &accepted) {
                if !in_range(p.from) || !in_range(p.to) {
                    result = Err(format!("accepted from {} to {}", p.from, p.to));
                } else if p.filters.len() > ingest::MAX_DIMENSIONS {
                    result = Err(format!("{} dimension filters accepted", p.filters.len()));
                } else if reads::check_bucket_count(&p).is_ok() {
                    // What the cap lets through is built, and must be as small as estimated.
                    let starts = timebucket::bucket_starts(tz, p.bucket, p.from, p.to);
                    if starts.len() > 20_001 {
                        result = Err(format!("{} buckets built", starts.len()));
                    }
                }
            }
            (format!("{input:?} in {tz}"), result)
        },
        QUERY_ALPHABET,
    );
}

const JSON_ALPHABET: &[u8] =
    b"{}[]\":,.-+0123456789eEtruefalsnl metricvaluedimensionsregiontimestamp\\";

#[test]
fn fuzz_ingest_batches() {
    let seeds: &[&[u8]] = &[
        br#"{"points":[{"metric":"revenue","timestamp":"2026-03-01T00:00:00Z","value":12.5,"dimensions":{"region":"eu"}}]}"#,
        br#"[{"metric":"revenue","timestamp":1767225600,"value":1},{"metric":"nps","timestamp":"2026-01-01","value":-3e2}]"#,
        br#"{"metric":"revenue","timestamp":"2026-03-01T00:00:00+01:00","value":1,"dimensions":{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8"}}"#,
    ];
    let limits = Limits {
        now_micros: 1_780_000_000_000_000,
        max_future_micros: 86_400_000_000,
        max_points: 50_000,
    };
    run(
        "ingest batches",
        3,
        |m| {
            let input = String::from_utf8_lossy(&m.input(seeds)).into_owned();
            let mut result = Ok(());
            if let Ok(body) = serde_json::from_str::<serde_json::Value>(&input)
                && let Ok(points) =
                    ingest::parse_batch(&body, |k| k == "revenue" || k == "nps", &limits)
            {
                for p in &points {
                    if !in_range(p.ts_micros)
                        || p.ts_micros > limits.now_micros + limits.max_future_micros
                        || !p.value.is_finite()
                        || p.dims.len() > ingest::MAX_DIMENSIONS
                    {
                        result = Err(format!("accepted {p:?}"));
                    }
                }
            }
            (input, result)
        },
        JSON_ALPHABET,
    );
}

const CSV_ALPHABET: &[u8] = b"0123456789,;\t\"\r\n-:T. abcdefgrevnuzip\xef\xbb\xbf\xff";

#[test]
fn fuzz_csv_files() {
    let seeds: &[&[u8]] = &[
        b"timestamp,revenue,Region\n2024-01-01,10,eu\n2024-01-02,\"1,5\",\"us \"\"x\"\"\"\n",
        b"\xef\xbb\xbfdate;revenue\r\n01/03/2024;1.234,5\r\n\r\n02/03/2024;7\r\n",
        b"time\tmetric\tvalue\n1709251200\trevenue\t3\n1709251201\tnps\t\"4\n\"\n",
    ];
    let known = |k: &str| k == "revenue" || k == "nps";
    let now = 1_780_000_000_000_000;
    run(
        "CSV files",
        4,
        |m| {
            let input = m.input(seeds);
            let mapping = match m.rng.gen_range(0..3) {
                0 => Mapping::default(),
                1 => Mapping {
                    decimal_comma: true,
                    dimension_columns: vec![("Region".into(), "region".into())],
                    ..Default::default()
                },
                _ => Mapping {
                    metric_column: Some("metric".into()),
                    time_zone: m.zone(),
                    ..Default::default()
                },
            };
            let mut whole = Vec::new();
            let a = csv_import::read(&input[..], &mapping, known, now, 0, |p| whole.extend(p));
            // The same file through a small buffer must read the same.
            let capacity = m.rng.gen_range(1..8);
            let mut split = Vec::new();
            let small = std::io::BufReader::with_capacity(capacity, &input[..]);
            let b = csv_import::read(small, &mapping, known, now, 0, |p| split.extend(p));
            let result = match (&a, &b) {
                (Ok(x), Ok(y)) if x != y || whole != split => {
                    Err(format!("buffer size {capacity} changed the result"))
                }
                (Ok(x), Ok(_)) if x.point_count != whole.len() => {
                    Err("point_count differs from the points handed out".into())
                }
                (Ok(x), Ok(_))
                    if whole
                        .iter()
                        .any(|p| !in_range(p.ts_micros) || p.ts_micros > now) =>
                {
                    Err(format!("a point outside the range: {:?}", x.preview))
                }
                (Ok(_), Err(e)) | (Err(e), Ok(_)) => Err(format!("only one read failed: {e}")),
                _ => Ok(()),
            };
            (format!("{:?}", String::from_utf8_lossy(&input)), result)
        },
        CSV_ALPHABET,
    );
}

/// The buckets a day of every zone builds stay ordered and distinct.
#[test]
fn fuzz_bucket_building() {
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..cases() {
        let tz: Tz = ZONES[rng.gen_range(0..ZONES.len())]
            .parse()
            .unwrap_or(Tz::UTC);
        let from = rng.gen_range(EARLIEST_MICROS..LATEST_MICROS - 86_400_000_000);
        let to = from + rng.gen_range(1..40 * 86_400_000_000);
        let starts = timebucket::bucket_starts(tz, Bucket::Day, from, to.min(LATEST_MICROS - 1));
        assert!(
            starts.windows(2).all(|w| w[0].utc_micros < w[1].utc_micros),
            "{tz} {from}..{to}"
        );
    }
}
