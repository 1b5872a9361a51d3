//! Asterisk's `cdr_csv` file (`/var/log/asterisk/cdr-csv/Master.csv`): one row per CDR.
//!
//! The column order is `build_csv_record` of Asterisk 22's `cdr/cdr_csv.c`: accountcode, src,
//! dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer, end, duration,
//! billsec, disposition, amaflags (always), then uniqueid (`loguniqueid = yes`), userfield
//! (`loguserfield = yes`) and peeraccount, linkedid, sequence (`newcdrcolumns = yes`). Dates
//! are `YYYY-MM-DD HH:MM:SS` in the PBX host's zone (or UTC with `usegmtime = yes`), whole
//! seconds; an empty answer means never answered.
//!
//! Rows are read as bytes (a caller name may not be UTF-8) and every problem is a [`BadLine`]
//! with its line number: a reader decides whether to stop or to go on.

use std::io::Read;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// One CDR.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrRow {
    /// 1-based line of the file where the row starts.
    pub line: u64,
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    pub clid: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    pub start: Timestamp,
    pub answer: Option<Timestamp>,
    pub end: Timestamp,
    pub duration: i64,
    pub billsec: i64,
    /// `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`.
    pub disposition: String,
    pub uniqueid: String,
    /// Only with `newcdrcolumns = yes`.
    pub linkedid: Option<String>,
}

impl CdrRow {
    pub fn answered(&self) -> bool {
        self.disposition.eq_ignore_ascii_case("ANSWERED") && self.answer.is_some()
    }
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Rows of a file, and its bad lines. `keep` filters rows as they are read (a time window),
/// so a large file never sits in memory whole.
pub fn read(
    input: impl Read,
    tz: &TimeZone,
    mut keep: impl FnMut(&CdrRow) -> bool,
) -> std::io::Result<(Vec<CdrRow>, Vec<BadLine>)> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map_or(line, |p| p.line());
                match parse_row(&rec, line, tz) {
                    Ok(Some(row)) => {
                        if keep(&row) {
                            rows.push(row);
                        }
                    }
                    Ok(None) => {}
                    Err(message) => bad.push(BadLine { line, message }),
                }
            }
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(std::io::Error::other(e.to_string()));
                }
                let line = e.position().map_or(line, |p| p.line());
                bad.push(BadLine {
                    line,
                    message: format!("not a CSV row: {e}"),
                });
            }
        }
    }
    Ok((rows, bad))
}

fn field(rec: &csv::ByteRecord, i: usize) -> String {
    rec.get(i)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn looks_like_uniqueid(s: &str) -> bool {
    match s.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// One row; `Ok(None)` for a header line (`accountcode,src,...`) or an empty one.
fn parse_row(rec: &csv::ByteRecord, line: u64, tz: &TimeZone) -> Result<Option<CdrRow>, String> {
    if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
        return Ok(None);
    }
    if rec.len() < 16 {
        return Err(format!(
            "{} columns, a cdr_csv row has at least 16 (accountcode ... amaflags)",
            rec.len()
        ));
    }
    if field(rec, 9).eq_ignore_ascii_case("start") {
        return Ok(None);
    }
    // The optional columns, by count: uniqueid / userfield / peeraccount, linkedid, sequence.
    let extra: Vec<String> = (16..rec.len()).map(|i| field(rec, i)).collect();
    let (uniqueid, linkedid) = match extra.len() {
        0 => (None, None),
        1 => (
            Some(extra[0].clone()).filter(|u| looks_like_uniqueid(u)),
            None,
        ),
        2 => (Some(extra[0].clone()), None),
        3 => (None, Some(extra[1].clone())),
        4 => (
            Some(extra[0].clone()).filter(|u| looks_like_uniqueid(u)),
            Some(extra[2].clone()),
        ),
        5 => (Some(extra[0].clone()), Some(extra[3].clone())),
        n => return Err(format!("{} columns, a cdr_csv row has at most 21", 16 + n)),
    };
    let linkedid = linkedid.filter(|l| !l.is_empty());
    let uniqueid = match uniqueid
        .filter(|u| !u.is_empty())
        .or_else(|| linkedid.clone())
    {
        Some(u) => u,
        None => return Err(
            "no uniqueid column (set loguniqueid = yes, or newcdrcolumns = yes, in cdr.conf [csv])"
                .into(),
        ),
    };
    let date = |i: usize, name: &str| -> Result<Option<Timestamp>, String> {
        let s = field(rec, i);
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let dt = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", s)
            .map_err(|_| format!("{name} {s:?} is not a date like 2026-12-02 07:50:37"))?;
        tz.to_ambiguous_zoned(dt)
            .compatible()
            .map(|z| Some(z.timestamp()))
            .map_err(|e| format!("{name} {s:?}: {e}"))
    };
    let int = |i: usize, name: &str| -> Result<i64, String> {
        let s = field(rec, i);
        s.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{name} {s:?} is not a number of seconds"))
    };
    let start = date(9, "start")?.ok_or("start is empty")?;
    let answer = date(10, "answer")?;
    let end = date(11, "end")?.ok_or("end is empty")?;
    if end < start {
        return Err(format!("end {end} is before start {start}"));
    }
    Ok(Some(CdrRow {
        line,
        src: field(rec, 1),
        dst: field(rec, 2),
        dcontext: field(rec, 3),
        clid: field(rec, 4),
        channel: field(rec, 5),
        dstchannel: field(rec, 6),
        lastapp: field(rec, 7),
        lastdata: field(rec, 8),
        start,
        answer,
        end,
        duration: int(12, "duration")?,
        billsec: int(13, "billsec")?,
        disposition: field(rec, 14),
        uniqueid,
        linkedid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#""","+79160000010","busy","sim-actor",""""" <+79160000010>","Local/203@agent-sim-00000015;2","","Busy","10","2026-12-02 07:50:37",,"2026-12-02 07:50:37",0,0,"BUSY","DOCUMENTATION","1796197837.43","""#;

    fn all(text: &str) -> (Vec<CdrRow>, Vec<BadLine>) {
        read(text.as_bytes(), &TimeZone::UTC, |_| true).unwrap()
    }

    #[test]
    fn reads_the_lab_row_with_uniqueid_and_userfield() {
        let (rows, bad) = all(&format!("{ROW}\n"));
        assert!(bad.is_empty(), "{bad:?}");
        let r = &rows[0];
        assert_eq!(r.src, "+79160000010");
        assert_eq!(r.clid, "\"\" <+79160000010>");
        assert_eq!(r.uniqueid, "1796197837.43");
        assert_eq!(r.answer, None);
        assert_eq!(r.start.as_second(), 1_796_197_837);
        assert_eq!(r.disposition, "BUSY");
        assert_eq!(r.line, 1);
    }

    #[test]
    fn newcdrcolumns_give_the_linkedid() {
        let row = format!("{ROW},\"\",\"1796197837.40\",7\n");
        let (rows, bad) = all(&row);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows[0].linkedid.as_deref(), Some("1796197837.40"));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_the_rest_is_read() {
        let text = format!(
            "{ROW}\n\"a\",\"b\"\n{}\n{}\n{ROW}\n",
            ROW.replace("2026-12-02 07:50:37\",,", "yesterday\",,"),
            ROW.replace(",0,0,", ",-1,0,")
        );
        let (rows, bad) = all(&text);
        assert_eq!(rows.len(), 2);
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4], "{bad:?}");
        assert!(bad[0].message.contains("2 columns"), "{}", bad[0]);
        assert!(bad[1].message.contains("start \"yesterday\""), "{}", bad[1]);
        assert!(bad[2].message.contains("duration"), "{}", bad[2]);
    }

    #[test]
    fn without_uniqueid_the_row_is_refused_with_the_setting_to_change() {
        let row = ROW.rsplit_once(",\"1796197837.43\"").unwrap().0;
        let (_, bad) = all(&format!("{row}\n"));
        assert!(bad[0].message.contains("loguniqueid"), "{}", bad[0]);
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "\u{0}\u{1}\n",
            "\"unterminated\n",
            ",,,,,,,,,,,,,,,,\n",
            "\u{feff}x\n",
        ] {
            let _ = all(text);
        }
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let _ = read(&bytes[..], &TimeZone::UTC, |_| true).unwrap();
    }

    #[test]
    fn local_time_is_read_in_the_given_zone() {
        let tz = TimeZone::get("Europe/Moscow").unwrap();
        let (rows, _) = read(format!("{ROW}\n").as_bytes(), &tz, |_| true).unwrap();
        assert_eq!(rows[0].start.as_second(), 1_796_197_837 - 3 * 3600);
    }
}
