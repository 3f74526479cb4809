//! CSV import: reading a spreadsheet export into metric points. Pure: text and a mapping in,
//! points and per-line problems out.
//!
//! - RFC 4180 quoting (commas, the delimiter, line breaks and `""` inside quotes), a UTF-8 BOM,
//!   CRLF or LF; the delimiter is `,`, `;` or tab, detected from the header unless given.
//! - Decimal point, or decimal comma with `decimal_comma` (`1234,5`, and `1.234,5` with dots
//!   grouping thousands). Nothing else is guessed (currency symbols, `1,000.5` in decimal-point
//!   mode): a value that is not a number in the chosen style is a problem.
//! - Two shapes: "long" (a metric-name column and a value column) or "wide" (one column per
//!   metric); dimension columns become point dimensions.
//! - Timestamps: RFC 3339, `YYYY-MM-DD[ HH:MM[:SS]]`, `DD/MM/YYYY`, unix seconds, or a given
//!   strftime format; those without an offset are read in the mapping's time zone (DST-aware:
//!   a wall time that does not exist is a problem, an ambiguous one takes the earlier instant).
//!
//! Every problem names its line (the header is line 1). Nothing is lost silently: each data row
//! is either turned into points or reported.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;

use super::ingest::{self, Dimensions, MIN_TIMESTAMP_MICROS, Point};

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// `None`: detect from the header line.
    pub delimiter: Option<char>,
    pub decimal_comma: bool,
    /// The timestamp column's header (default: `timestamp`, `date` or `time`, else the first).
    pub timestamp_column: Option<String>,
    /// A strftime format; `None`: the formats listed in the module docs.
    pub timestamp_format: Option<String>,
    pub time_zone: Tz,
    /// Long shape: the column holding metric keys, and the value column (default `value`).
    pub metric_column: Option<String>,
    pub value_column: Option<String>,
    /// Wide shape: (column, metric key); empty means every other column, keyed by its header.
    pub metric_columns: Vec<(String, String)>,
    /// (column, dimension key).
    pub dimension_columns: Vec<(String, String)>,
}

/// A dimension key from a column header: lowercase, other characters as `_` ("Sales Region" →
/// `sales_region`).
pub fn dimension_key_of(column: &str) -> String {
    let mut key: String = column
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !key.starts_with(|c: char| c.is_ascii_lowercase()) {
        key.insert(0, 'd');
    }
    key.truncate(32);
    key
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            delimiter: None,
            decimal_comma: false,
            timestamp_column: None,
            timestamp_format: None,
            time_zone: Tz::UTC,
            metric_column: None,
            value_column: None,
            metric_columns: Vec::new(),
            dimension_columns: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowProblem {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub columns: Vec<String>,
    pub delimiter: char,
    /// Data rows read (not counting the header or blank lines).
    pub rows: usize,
    pub points: Vec<Point>,
    pub problems: Vec<RowProblem>,
}

/// Splits CSV text into records, each with the line it starts on.
fn records(text: &str, delimiter: char) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut record: Vec<String> = Vec::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut start_line = 1;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                any = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                record.push(std::mem::take(&mut field));
                if any || record.len() > 1 || !record[0].is_empty() {
                    out.push((start_line, std::mem::take(&mut record)));
                } else {
                    record.clear();
                }
                any = false;
                line += 1;
                start_line = line;
            }
            c if c == delimiter => {
                record.push(std::mem::take(&mut field));
                any = true;
            }
            _ => {
                field.push(c);
                any = true;
            }
        }
    }
    if any || !field.is_empty() {
        record.push(field);
        out.push((start_line, record));
    }
    out
}

fn detect_delimiter(header: &str) -> char {
    let count = |d: char| header.chars().filter(|c| *c == d).count();
    [',', ';', '\t']
        .into_iter()
        .max_by_key(|d| count(*d))
        .filter(|d| count(*d) > 0)
        .unwrap_or(',')
}

/// Parses a number written with a decimal point (or a decimal comma).
pub fn parse_number(raw: &str, decimal_comma: bool) -> Option<f64> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    let normal = if decimal_comma {
        let (int, frac) = s.split_once(',').unwrap_or((s, ""));
        let digits = int.trim_start_matches(['-', '+']);
        if digits.contains('.') {
            // Dots only as thousands separators: 1.234 or 12.345.678, never 1.23.
            let groups: Vec<&str> = digits.split('.').collect();
            let grouped = (1..=3).contains(&groups[0].len())
                && groups[1..].iter().all(|g| g.len() == 3)
                && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()));
            if !grouped || frac.contains('.') {
                return None;
            }
        }
        let int = int.replace('.', "");
        if frac.is_empty() {
            int
        } else {
            format!("{int}.{frac}")
        }
    } else {
        s.to_string()
    };
    normal.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn local_to_utc(tz: Tz, t: NaiveDateTime) -> Result<i64, String> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(x) => Ok(x.timestamp_micros()),
        chrono::LocalResult::Ambiguous(early, _) => Ok(early.timestamp_micros()),
        chrono::LocalResult::None => {
            Err(format!("{t} does not exist in {tz} (the clocks skip it)"))
        }
    }
}

/// A timestamp in µs (UTC), reading times without an offset in `tz`, within the instants every
/// input accepts (1970 to 2200, as the API).
pub fn parse_timestamp(raw: &str, format: Option<&str>, tz: Tz) -> Result<i64, String> {
    let micros = parse_any_timestamp(raw, format, tz)?;
    if crate::domain::timebucket::in_accepted_range(micros) {
        Ok(micros)
    } else {
        Err(format!(
            "timestamp {:?} lies outside 1970-01-01 to 2200-01-01",
            raw.trim()
        ))
    }
}

fn parse_any_timestamp(raw: &str, format: Option<&str>, tz: Tz) -> Result<i64, String> {
    let s = raw.trim();
    if let Some(f) = format {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Ok(t.timestamp_micros());
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return local_to_utc(tz, t);
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return local_to_utc(tz, d.and_hms_opt(0, 0, 0).unwrap_or_default());
        }
        return Err(format!("timestamp {s:?} does not match the format {f:?}"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return local_to_utc(tz, t);
        }
    }
    for f in ["%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return local_to_utc(tz, d.and_hms_opt(0, 0, 0).unwrap_or_default());
        }
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1_000_000));
    }
    Err(format!(
        "timestamp {s:?} is not a date (use e.g. 2024-03-01, 2024-03-01 14:30, RFC 3339 or unix seconds, or give the format)"
    ))
}

/// Reads CSV text with `mapping` into points. `is_known_metric` answers whether a key is in the
/// org's catalog. Err: a problem with the file as a whole (no header, a mapped column missing).
pub fn parse(
    text: &str,
    mapping: &Mapping,
    is_known_metric: impl Fn(&str) -> bool,
    now_micros: i64,
    max_future_micros: i64,
) -> Result<Parsed, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header_line = text.lines().next().unwrap_or("");
    let delimiter = mapping
        .delimiter
        .unwrap_or_else(|| detect_delimiter(header_line));
    let mut recs = records(text, delimiter).into_iter();
    let Some((_, header)) = recs.next() else {
        return Err("the file is empty: it needs a header line and data rows".into());
    };
    let columns: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    let find = |name: &str| -> Result<usize, String> {
        columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                format!(
                    "no column {name:?} in the header (columns: {})",
                    columns.join(", ")
                )
            })
    };
    let ts_col = match &mapping.timestamp_column {
        Some(name) => find(name)?,
        None => ["timestamp", "date", "time", "datetime"]
            .iter()
            .find_map(|n| find(n).ok())
            .unwrap_or(0),
    };
    // The API's rules for dimensions hold for files too.
    if mapping.dimension_columns.len() > ingest::MAX_DIMENSIONS {
        return Err(format!(
            "{} dimension columns; a point has at most {}",
            mapping.dimension_columns.len(),
            ingest::MAX_DIMENSIONS
        ));
    }
    let dim_cols: Vec<(usize, String)> = mapping
        .dimension_columns
        .iter()
        .map(|(col, key)| {
            ingest::validate_dimension_key(key)
                .map_err(|e| format!("dimension {key:?} (column {col:?}): {e}"))?;
            Ok((find(col)?, key.clone()))
        })
        .collect::<Result<_, String>>()?;
    // Long shape: (metric column, value column); wide: (column, metric key) pairs.
    let long = match &mapping.metric_column {
        Some(m) => Some((
            find(m)?,
            find(mapping.value_column.as_deref().unwrap_or("value"))?,
        )),
        None => None,
    };
    let wide: Vec<(usize, String)> = if long.is_some() {
        Vec::new()
    } else if mapping.metric_columns.is_empty() {
        columns
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != ts_col && dim_cols.iter().all(|(d, _)| d != i))
            .map(|(i, c)| (i, c.clone()))
            .collect()
    } else {
        mapping
            .metric_columns
            .iter()
            .map(|(col, key)| Ok((find(col)?, key.clone())))
            .collect::<Result<_, String>>()?
    };
    if long.is_none() && wide.is_empty() {
        return Err("no value columns: map at least one column to a metric".into());
    }
    for (_, key) in &wide {
        if !is_known_metric(key) {
            return Err(format!(
                "column {key:?} is not a metric of this organisation: map it to one, or create the custom metric first"
            ));
        }
    }

    let mut points = Vec::new();
    let mut problems = Vec::new();
    let mut rows = 0;
    for (line, rec) in recs {
        rows += 1;
        if rec.len() != columns.len() {
            problems.push(RowProblem {
                line,
                reason: format!(
                    "has {} fields, the header has {} (a delimiter inside an unquoted value?)",
                    rec.len(),
                    columns.len()
                ),
            });
            continue;
        }
        let ts = match parse_timestamp(
            &rec[ts_col],
            mapping.timestamp_format.as_deref(),
            mapping.time_zone,
        ) {
            Ok(t) if t < MIN_TIMESTAMP_MICROS => {
                problems.push(RowProblem {
                    line,
                    reason: format!("timestamp {:?} is before 2000", rec[ts_col]),
                });
                continue;
            }
            Ok(t) if t > now_micros + max_future_micros => {
                problems.push(RowProblem {
                    line,
                    reason: format!("timestamp {:?} is in the future", rec[ts_col]),
                });
                continue;
            }
            Ok(t) => t,
            Err(reason) => {
                problems.push(RowProblem { line, reason });
                continue;
            }
        };
        let mut dims = Dimensions::new();
        let mut bad_dim = None;
        for (i, key) in &dim_cols {
            let v = rec[*i].trim();
            if v.chars().count() > ingest::MAX_DIMENSION_VALUE_LEN {
                bad_dim = Some(format!(
                    "{key} is longer than {} characters",
                    ingest::MAX_DIMENSION_VALUE_LEN
                ));
            } else if v.chars().any(char::is_control) {
                bad_dim = Some(format!("{key} holds a control character"));
            } else if !v.is_empty() {
                dims.insert(key.clone(), v.to_string());
            }
        }
        if let Some(reason) = bad_dim {
            problems.push(RowProblem { line, reason });
            continue;
        }
        let mut row_points = Vec::new();
        let mut row_problem = None;
        match long {
            Some((m, v)) => {
                let key = rec[m].trim();
                if !is_known_metric(key) {
                    row_problem = Some(format!(
                        "metric {key:?} is not in this organisation's catalog"
                    ));
                } else {
                    match parse_number(&rec[v], mapping.decimal_comma) {
                        Some(value) => row_points.push((key.to_string(), value)),
                        None => row_problem = Some(format!("value {:?} is not a number", rec[v])),
                    }
                }
            }
            None => {
                for (i, key) in &wide {
                    let raw = rec[*i].trim();
                    if raw.is_empty() {
                        continue; // no reading for this metric on this row
                    }
                    match parse_number(raw, mapping.decimal_comma) {
                        Some(value) => row_points.push((key.clone(), value)),
                        None => {
                            row_problem =
                                Some(format!("{} value {raw:?} is not a number", columns[*i]));
                            break;
                        }
                    }
                }
            }
        }
        if let Some(reason) = row_problem {
            problems.push(RowProblem { line, reason });
            continue;
        }
        points.extend(row_points.into_iter().map(|(metric, value)| Point {
            metric,
            ts_micros: ts,
            value,
            dims: dims.clone(),
        }));
    }
    Ok(Parsed {
        columns,
        delimiter,
        rows,
        points,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000;

    fn known(k: &str) -> bool {
        matches!(k, "revenue" | "expenses" | "churn_rate")
    }

    fn run(text: &str, mapping: &Mapping) -> Parsed {
        parse(text, mapping, known, NOW, 0).expect("parsed")
    }

    /// Files follow the API's dimension rules: nine dimension columns are refused for the file
    /// (a point has at most 8); a control character in a value refuses its row, naming it.
    #[test]
    fn dimensions_follow_the_api_rules() {
        let cols: Vec<(String, String)> =
            (0..9).map(|i| (format!("d{i}"), format!("d{i}"))).collect();
        let header = format!(
            "date,revenue,{}",
            (0..9)
                .map(|i| format!("d{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let text = format!("{header}\n2024-03-01,1,{}\n", ["x"; 9].join(","));
        let nine = Mapping {
            dimension_columns: cols,
            ..Mapping::default()
        };
        let err = parse(&text, &nine, known, NOW, 0).expect_err("refused");
        assert!(err.to_string().contains("at most 8"), "{err}");
        let one = Mapping {
            dimension_columns: vec![("region".into(), "region".into())],
            ..Mapping::default()
        };
        let parsed = run(
            "date,revenue,region\n2024-03-01,1,eu\u{7}\n2024-03-02,2,us\n",
            &one,
        );
        assert_eq!(parsed.points.len(), 1);
        assert!(parsed.problems[0].reason.contains("control character"));
    }

    #[test]
    fn a_wide_file_with_bom_crlf_and_quoted_commas() {
        let text = "\u{feff}date,revenue,expenses,region\r\n2024-03-01,\"1,000.5\",200,eu\r\n2024-03-02,1100,,\"us, east\"\r\n";
        let mapping = Mapping {
            dimension_columns: vec![("region".into(), "region".into())],
            ..Mapping::default()
        };
        let p = parse(text, &mapping, known, NOW, 0).expect("parsed");
        // "1,000.5" is not a plain number: reported, not guessed.
        assert_eq!(
            p.problems,
            vec![RowProblem {
                line: 2,
                reason: "revenue value \"1,000.5\" is not a number".into()
            }]
        );
        assert_eq!(p.rows, 2);
        assert_eq!(p.points.len(), 1, "the empty expenses cell is no reading");
        assert_eq!(p.points[0].value, 1100.0);
        assert_eq!(
            p.points[0].dims.get("region").map(String::as_str),
            Some("us, east")
        );
        assert_eq!(p.points[0].ts_micros, 1_709_337_600_000_000);
    }

    #[test]
    fn semicolons_and_decimal_commas_in_a_long_file_in_local_time() {
        let text = "Zeit;Kennzahl;Wert\n2024-03-31 01:30;revenue;12,5\n2024-03-31 02:30;revenue;1\n01.04.2024;nope;3\n";
        let mapping = Mapping {
            decimal_comma: true,
            timestamp_column: Some("Zeit".into()),
            metric_column: Some("Kennzahl".into()),
            value_column: Some("Wert".into()),
            time_zone: "Europe/Berlin".parse().unwrap_or(Tz::UTC),
            ..Mapping::default()
        };
        let p = run(text, &mapping);
        assert_eq!(p.delimiter, ';');
        assert_eq!(p.points.len(), 1);
        assert_eq!(p.points[0].value, 12.5);
        // 01:30 CET = 00:30 UTC.
        assert_eq!(p.points[0].ts_micros, 1_711_845_000_000_000);
        assert_eq!(p.problems.len(), 2);
        assert_eq!(p.problems[0].line, 3);
        assert!(
            p.problems[0]
                .reason
                .contains("does not exist in Europe/Berlin"),
            "{:?}",
            p.problems
        );
        assert_eq!(p.problems[1].line, 4);
        assert!(
            p.problems[1]
                .reason
                .contains("\"nope\" is not in this organisation's catalog")
        );
    }

    #[test]
    fn line_numbers_count_physical_lines_across_quoted_line_breaks() {
        let text = "timestamp,revenue,note\n2024-01-01,1,\"two\nlines\"\n2024-01-02,x,ok\n\n2024-01-03,3,fine\n2024-01-04,4\n";
        let mapping = Mapping {
            metric_columns: vec![("revenue".into(), "revenue".into())],
            ..Mapping::default()
        };
        let p = run(text, &mapping);
        let lines: Vec<usize> = p.problems.iter().map(|x| x.line).collect();
        assert_eq!(lines, vec![4, 7], "{:?}", p.problems);
        assert_eq!(p.points.len(), 2);
        assert_eq!(p.rows, 4);
    }

    #[test]
    fn file_level_problems_name_the_column() {
        let e = parse(
            "timestamp,sales\n2024-01-01,1\n",
            &Mapping::default(),
            known,
            NOW,
            0,
        )
        .unwrap_err();
        assert!(e.contains("\"sales\" is not a metric"), "{e}");
        let m = Mapping {
            timestamp_column: Some("when".into()),
            ..Mapping::default()
        };
        let e = parse("timestamp,revenue\n", &m, known, NOW, 0).unwrap_err();
        assert!(e.contains("no column \"when\""), "{e}");
        assert!(parse("", &Mapping::default(), known, NOW, 0).is_err());
    }

    #[test]
    fn numbers_in_either_decimal_style() {
        assert_eq!(parse_number("1.234,5", true), Some(1234.5));
        assert_eq!(parse_number("-12.345.678", true), Some(-12_345_678.0));
        assert_eq!(parse_number("12,75", true), Some(12.75));
        assert_eq!(parse_number("1.23", true), None);
        assert_eq!(parse_number("1.234.5", true), None);
        assert_eq!(parse_number("1234.5", false), Some(1234.5));
        assert_eq!(parse_number("1,234.5", false), None);
        assert_eq!(parse_number("1e3", false), Some(1000.0));
        assert_eq!(parse_number("€5", false), None);
        assert_eq!(parse_number("NaN", false), None);
    }

    #[test]
    fn dimension_keys_come_from_headers() {
        assert_eq!(dimension_key_of("Sales Region"), "sales_region");
        assert_eq!(dimension_key_of("2nd"), "d2nd");
        assert!(ingest::validate_dimension_key(&dimension_key_of("Région (EU)")).is_ok());
    }

    #[test]
    fn future_and_ancient_timestamps_and_unix_seconds() {
        let text = "timestamp,revenue\n1709251200,5\n1999-12-31,1\n2030-01-01,2\n";
        let p = run(text, &Mapping::default());
        assert_eq!(p.points.len(), 1);
        assert_eq!(p.points[0].ts_micros, 1_709_251_200_000_000);
        let reasons: Vec<&str> = p.problems.iter().map(|x| x.reason.as_str()).collect();
        assert!(
            reasons[0].contains("before 2000") && reasons[1].contains("future"),
            "{reasons:?}"
        );
    }

    /// CSV timestamps follow the API's range: 1970-01-01 to before 2200-01-01 (UTC here), in
    /// every accepted spelling, Unix seconds included (7258118400 is 2200-01-01T00:00:00Z).
    #[test]
    fn timestamps_outside_1970_to_2200_are_refused() {
        let utc = Tz::UTC;
        assert_eq!(parse_timestamp("1970-01-01", None, utc), Ok(0));
        assert_eq!(
            parse_timestamp("7258118399", None, utc),
            Ok(7_258_118_399_000_000)
        );
        for bad in [
            "1969-12-31",
            "7258118400",
            "9999-12-31T00:00:00Z",
            "31/12/9999",
        ] {
            let err = parse_timestamp(bad, None, utc).unwrap_err();
            assert!(err.contains("1970-01-01 to 2200-01-01"), "{bad}: {err}");
        }
    }
}
