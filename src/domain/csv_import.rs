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

use std::io::{BufRead, Read};

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

/// How a file that is not UTF-8 is reported (the API answers it with 400 `not_utf8`).
pub const NOT_UTF8: &str = "the file is not UTF-8 text";

/// At most this many columns in a header.
pub const MAX_COLUMNS: usize = 1_000;
/// A field longer than this is a problem of its row (and is not kept whole).
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// At most this many problems are kept for the report (all are counted).
pub const MAX_KEPT_PROBLEMS: usize = 1_000;
/// Points kept to preview an import.
pub const PREVIEW_POINTS: usize = 20;

/// One CSV record as read: the line it starts on, its fields (at most the reader's limit,
/// the rest only counted), and whether a field was cut at [`MAX_FIELD_BYTES`].
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
    pub field_count: usize,
    pub oversized: bool,
}

/// Reads records one at a time from a byte stream, so a file of any size costs one record's
/// memory: fields beyond `max_fields` are counted, not kept, and each kept field holds at most
/// [`MAX_FIELD_BYTES`]. CSV's structure is ASCII, so the bytes are split first and each field
/// is checked as UTF-8 after.
pub struct Records<R> {
    input: R,
    delimiter: u8,
    max_fields: usize,
    line: usize,
    /// Bytes consumed so far, to point at the first bad byte of a file that is not UTF-8.
    offset: u64,
    /// A `\r` ended the last record: a `\n` right after it belongs to it.
    skip_lf: bool,
    done: bool,
}

impl<R: std::io::BufRead> Records<R> {
    pub fn new(input: R, delimiter: char, max_fields: usize) -> Records<R> {
        Records {
            input,
            delimiter: u8::try_from(delimiter).unwrap_or(b','),
            max_fields,
            line: 1,
            offset: 0,
            skip_lf: false,
            done: false,
        }
    }

    pub fn set_max_fields(&mut self, max_fields: usize) {
        self.max_fields = max_fields;
    }

    /// The next non-blank record, `None` at the end. Err: the file is not UTF-8 (naming the
    /// byte) or cannot be read.
    pub fn next_record(&mut self) -> Result<Option<Record>, String> {
        if self.done {
            return Ok(None);
        }
        let mut fields: Vec<String> = Vec::new();
        let mut field: Vec<u8> = Vec::new();
        let (mut field_len, mut field_count) = (0usize, 0usize);
        let mut field_start = self.offset;
        let (mut in_quotes, mut quote_in_quotes, mut any, mut oversized) =
            (false, false, false, false);
        let mut start_line = self.line;
        let max_fields = self.max_fields;
        loop {
            let buf = self
                .input
                .fill_buf()
                .map_err(|e| format!("the file could not be read: {e}"))?;
            if buf.is_empty() {
                self.done = true;
                if any || field_len > 0 {
                    break; // the last record has no line break after it
                }
                return Ok(None);
            }
            let mut used = 0;
            let mut finished = false;
            for &b in buf {
                used += 1;
                if self.skip_lf {
                    self.skip_lf = false;
                    if b == b'\n' {
                        continue;
                    }
                }
                if in_quotes {
                    if quote_in_quotes {
                        quote_in_quotes = false;
                        if b == b'"' {
                            push_byte(&mut field, &mut field_len, &mut oversized, b);
                            continue;
                        }
                        in_quotes = false;
                        // fall through: `b` is outside the quotes now
                    } else {
                        match b {
                            b'"' => quote_in_quotes = true,
                            b'\n' => {
                                self.line += 1;
                                push_byte(&mut field, &mut field_len, &mut oversized, b);
                            }
                            _ => push_byte(&mut field, &mut field_len, &mut oversized, b),
                        }
                        continue;
                    }
                }
                match b {
                    b'"' if field_len == 0 => {
                        in_quotes = true;
                        any = true;
                    }
                    b'\n' | b'\r' => {
                        self.skip_lf = b == b'\r';
                        self.line += 1;
                        let blank = !any && field_len == 0 && field_count == 0;
                        if blank {
                            field_start = self.offset + used as u64;
                            start_line = self.line;
                            continue;
                        }
                        finished = true;
                        break;
                    }
                    d if d == self.delimiter => {
                        finish_field(
                            max_fields,
                            &mut fields,
                            &mut field,
                            &mut field_count,
                            oversized,
                            field_start,
                        )?;
                        field_len = 0;
                        field_start = self.offset + used as u64;
                        any = true;
                    }
                    _ => {
                        push_byte(&mut field, &mut field_len, &mut oversized, b);
                        any = true;
                    }
                }
            }
            self.input.consume(used);
            self.offset += used as u64;
            if finished {
                break;
            }
        }
        finish_field(
            max_fields,
            &mut fields,
            &mut field,
            &mut field_count,
            oversized,
            field_start,
        )?;
        Ok(Some(Record {
            line: start_line,
            fields,
            field_count,
            oversized,
        }))
    }
}

fn finish_field(
    max_fields: usize,
    fields: &mut Vec<String>,
    field: &mut Vec<u8>,
    field_count: &mut usize,
    oversized: bool,
    field_start: u64,
) -> Result<(), String> {
    *field_count += 1;
    let bytes = std::mem::take(field);
    if fields.len() >= max_fields {
        return Ok(());
    }
    let text = if oversized {
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        String::from_utf8(bytes).map_err(|e| {
            format!(
                "{NOT_UTF8} (near byte {}); save it as CSV UTF-8",
                field_start + e.utf8_error().valid_up_to() as u64
            )
        })?
    };
    fields.push(text);
    Ok(())
}

fn push_byte(field: &mut Vec<u8>, len: &mut usize, oversized: &mut bool, b: u8) {
    *len += 1;
    if field.len() < MAX_FIELD_BYTES {
        field.push(b);
    } else {
        *oversized = true;
    }
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

/// What reading a file found: its shape, counts, the first problems and a preview. The points
/// themselves go to the caller as they are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub columns: Vec<String>,
    pub delimiter: char,
    /// Data rows read (not counting the header or blank lines).
    pub rows: usize,
    pub point_count: usize,
    /// The first [`MAX_KEPT_PROBLEMS`] problems.
    pub problems: Vec<RowProblem>,
    /// Every problem, kept or not.
    pub problem_count: usize,
    /// The first [`PREVIEW_POINTS`] points.
    pub preview: Vec<Point>,
}

/// Turns one record into points: the header and the mapping resolved once.
struct Rows<'a, F> {
    columns: Vec<String>,
    mapping: &'a Mapping,
    is_known_metric: F,
    ts_col: usize,
    dim_cols: Vec<(usize, String)>,
    /// Long shape: (metric column, value column).
    long: Option<(usize, usize)>,
    /// Wide shape: (column, metric key).
    wide: Vec<(usize, String)>,
    now_micros: i64,
    max_future_micros: i64,
}

impl<'a, F: Fn(&str) -> bool> Rows<'a, F> {
    fn new(
        columns: Vec<String>,
        mapping: &'a Mapping,
        is_known_metric: F,
        now_micros: i64,
        max_future_micros: i64,
    ) -> Result<Rows<'a, F>, String> {
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
        Ok(Rows {
            columns,
            mapping,
            is_known_metric,
            ts_col,
            dim_cols,
            long,
            wide,
            now_micros,
            max_future_micros,
        })
    }

    /// The points of one data record, or the reason it has none.
    fn points(&self, rec: &Record) -> Result<Vec<Point>, String> {
        let (columns, mapping) = (&self.columns, self.mapping);
        if rec.field_count != columns.len() {
            return Err(format!(
                "has {} fields, the header has {} (a delimiter inside an unquoted value?)",
                rec.field_count,
                columns.len()
            ));
        }
        if rec.oversized {
            return Err(format!("a value is longer than {MAX_FIELD_BYTES} bytes"));
        }
        let fields = &rec.fields;
        let raw_ts = &fields[self.ts_col];
        let ts = match parse_timestamp(
            raw_ts,
            mapping.timestamp_format.as_deref(),
            mapping.time_zone,
        ) {
            Ok(t) if t < MIN_TIMESTAMP_MICROS => {
                return Err(format!("timestamp {raw_ts:?} is before 2000"));
            }
            Ok(t) if t > self.now_micros.saturating_add(self.max_future_micros) => {
                return Err(format!("timestamp {raw_ts:?} is in the future"));
            }
            Ok(t) => t,
            Err(reason) => return Err(reason),
        };
        let mut dims = Dimensions::new();
        for (i, key) in &self.dim_cols {
            let v = fields[*i].trim();
            if v.chars().count() > ingest::MAX_DIMENSION_VALUE_LEN {
                return Err(format!(
                    "{key} is longer than {} characters",
                    ingest::MAX_DIMENSION_VALUE_LEN
                ));
            } else if v.chars().any(char::is_control) {
                return Err(format!("{key} holds a control character"));
            } else if !v.is_empty() {
                dims.insert(key.clone(), v.to_string());
            }
        }
        let mut row_points = Vec::new();
        match self.long {
            Some((m, v)) => {
                let key = fields[m].trim();
                if !(self.is_known_metric)(key) {
                    return Err(format!(
                        "metric {key:?} is not in this organisation's catalog"
                    ));
                }
                match parse_number(&fields[v], mapping.decimal_comma) {
                    Some(value) => row_points.push((key.to_string(), value)),
                    None => return Err(format!("value {:?} is not a number", fields[v])),
                }
            }
            None => {
                for (i, key) in &self.wide {
                    let raw = fields[*i].trim();
                    if raw.is_empty() {
                        continue; // no reading for this metric on this row
                    }
                    match parse_number(raw, mapping.decimal_comma) {
                        Some(value) => row_points.push((key.clone(), value)),
                        None => {
                            return Err(format!("{} value {raw:?} is not a number", columns[*i]));
                        }
                    }
                }
            }
        }
        Ok(row_points
            .into_iter()
            .map(|(metric, value)| Point {
                metric,
                ts_micros: ts,
                value,
                dims: dims.clone(),
            })
            .collect())
    }
}

/// Reads a CSV file with `mapping`, one record at a time, handing each row's points to `each`
/// as they are read (memory stays at one record plus what `each` keeps). `is_known_metric`
/// answers whether a key is in the org's catalog. Err: a problem with the file as a whole (not
/// UTF-8, no header, a mapped column missing).
pub fn read<R: std::io::BufRead>(
    mut input: R,
    mapping: &Mapping,
    is_known_metric: impl Fn(&str) -> bool,
    now_micros: i64,
    max_future_micros: i64,
    mut each: impl FnMut(Vec<Point>),
) -> Result<Summary, String> {
    // The header line decides the delimiter; it is read first and put back in front.
    let mut first = Vec::new();
    (&mut input)
        .take(MAX_COLUMNS as u64 * 256)
        .read_until(b'\n', &mut first)
        .map_err(|e| format!("the file could not be read: {e}"))?;
    let start = if first.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    let header_text = String::from_utf8_lossy(&first[start..]).into_owned();
    let delimiter = mapping
        .delimiter
        .unwrap_or_else(|| detect_delimiter(&header_text));
    let mut records = Records::new(
        std::io::Cursor::new(first[start..].to_vec()).chain(input),
        delimiter,
        MAX_COLUMNS + 1,
    );
    let Some(header) = records.next_record()? else {
        return Err("the file is empty: it needs a header line and data rows".into());
    };
    if header.field_count > MAX_COLUMNS {
        return Err(format!(
            "the header has {} columns; at most {MAX_COLUMNS} are read",
            header.field_count
        ));
    }
    let columns: Vec<String> = header.fields.iter().map(|h| h.trim().to_string()).collect();
    // A data record keeps one field more than the header, enough to say it has too many.
    records.set_max_fields(columns.len() + 1);
    let rows_of = Rows::new(
        columns,
        mapping,
        is_known_metric,
        now_micros,
        max_future_micros,
    )?;
    let mut summary = Summary {
        columns: Vec::new(),
        delimiter,
        rows: 0,
        point_count: 0,
        problems: Vec::new(),
        problem_count: 0,
        preview: Vec::new(),
    };
    while let Some(rec) = records.next_record()? {
        summary.rows += 1;
        match rows_of.points(&rec) {
            Ok(points) => {
                summary.point_count += points.len();
                let room = PREVIEW_POINTS.saturating_sub(summary.preview.len());
                summary.preview.extend(points.iter().take(room).cloned());
                each(points);
            }
            Err(reason) => {
                summary.problem_count += 1;
                if summary.problems.len() < MAX_KEPT_PROBLEMS {
                    summary.problems.push(RowProblem {
                        line: rec.line,
                        reason,
                    });
                }
            }
        }
    }
    summary.columns = rows_of.columns;
    Ok(summary)
}

/// [`read`] over text in memory, keeping every point.
pub fn parse(
    text: &str,
    mapping: &Mapping,
    is_known_metric: impl Fn(&str) -> bool,
    now_micros: i64,
    max_future_micros: i64,
) -> Result<Parsed, String> {
    let mut points = Vec::new();
    let summary = read(
        text.as_bytes(),
        mapping,
        is_known_metric,
        now_micros,
        max_future_micros,
        |p| points.extend(p),
    )?;
    Ok(Parsed {
        columns: summary.columns,
        delimiter: summary.delimiter,
        rows: summary.rows,
        points,
        problems: summary.problems,
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

    /// Reading through a one-byte buffer gives exactly what reading the whole text gives:
    /// quotes, doubled quotes, CRLF and BOM split across every possible buffer boundary.
    #[test]
    fn records_do_not_depend_on_buffer_boundaries() {
        let text = "\u{feff}timestamp,revenue,\"Region\"\r\n2024-01-01,\"1,5\",\"a \"\"b\"\"\"\r\n\r\n2024-01-02,\"2\n3\",x\n2024-01-03,4,\"\"";
        let m = Mapping {
            decimal_comma: true,
            dimension_columns: vec![("Region".into(), "region".into())],
            ..Default::default()
        };
        let whole = parse(text, &m, known, NOW, 0).expect("parsed");
        let mut points = Vec::new();
        let tiny = std::io::BufReader::with_capacity(1, text.as_bytes());
        let summary = read(tiny, &m, known, NOW, 0, |p| points.extend(p)).expect("parsed");
        assert_eq!(points, whole.points);
        assert_eq!(
            (summary.rows, summary.problems.clone()),
            (whole.rows, whole.problems.clone())
        );
        assert_eq!(whole.rows, 3);
        assert_eq!(
            whole.points[0].dims.get("region").map(String::as_str),
            Some("a \"b\"")
        );
        assert_eq!(whole.problems[0].line, 4, "the quoted line break counts");
    }

    /// A hostile file costs one record of memory: a line of a million commas is one row with
    /// 1,000,001 fields, of which the reader keeps the header's 2 + 1; a 100 KiB value is cut
    /// at 64 KiB and its row reported.
    #[test]
    fn hostile_records_are_bounded() {
        let mut text = String::from("timestamp,revenue\n");
        text.push_str(&",".repeat(1_000_000));
        text.push_str("\n2024-01-01,");
        text.push_str(&"9".repeat(100 * 1024));
        text.push('\n');
        let mut records = Records::new(text.as_bytes(), ',', 3);
        let header = records.next_record().unwrap().unwrap();
        assert_eq!(header.fields, ["timestamp", "revenue"]);
        let commas = records.next_record().unwrap().unwrap();
        assert_eq!((commas.field_count, commas.fields.len()), (1_000_001, 3));
        let long = records.next_record().unwrap().unwrap();
        assert!(long.oversized);
        assert_eq!(long.fields[1].len(), MAX_FIELD_BYTES);
        let p = parse(&text, &Mapping::default(), known, NOW, 0).expect("parsed");
        assert_eq!(p.rows, 2);
        assert!(
            p.problems[0].reason.starts_with("has 1000001 fields"),
            "{:?}",
            p.problems
        );
        assert!(
            p.problems[1].reason.contains("longer than 65536 bytes"),
            "{:?}",
            p.problems
        );
    }

    /// Bytes that are not UTF-8 stop the file with a message naming where.
    #[test]
    fn a_file_that_is_not_utf8_is_named() {
        let bytes = b"timestamp,revenue\n2024-01-01,\xff\n";
        let err = read(&bytes[..], &Mapping::default(), known, NOW, 0, |_| {}).unwrap_err();
        assert!(err.starts_with(NOT_UTF8), "{err}");
        assert!(err.contains("near byte 29"), "{err}");
    }
}
