//! CSV files: a header row naming the fields, then one row per line. Cells may be
//! quoted (`"a, b"`, `""` for a quote). A vector cell is a JSON array
//! (`[0.1,0.2]`, quoted or not: the commas inside brackets do not split cells) or
//! space-separated numbers.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use milvus_like_api::schema::CollectionSchema;

use super::{KeyCounter, RowSource, map_columns, push_cell};
use crate::cli::error::CliError;
use crate::columns::RowBatch;

/// Records of a CSV text, with the line each starts on.
#[derive(Debug)]
pub struct CsvRecords<R> {
    reader: R,
    /// The file as named in messages.
    file: String,
    /// Lines read so far.
    line: usize,
    buf: String,
}

impl<R: BufRead> CsvRecords<R> {
    pub fn new(reader: R, file: impl Into<String>) -> Self {
        Self {
            reader,
            file: file.into(),
            line: 0,
            buf: String::new(),
        }
    }

    fn read_line(&mut self) -> Result<bool, CliError> {
        self.buf.clear();
        let n = self.reader.read_line(&mut self.buf).map_err(|e| {
            CliError::bad_input(format!(
                "line {} of {}: cannot read it: {e}",
                self.line + 1,
                self.file
            ))
        })?;
        if n > 0 {
            self.line += 1;
        }
        Ok(n > 0)
    }

    /// The next non-blank record and its first line number; `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<(usize, Vec<String>)>, CliError> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            if self.line == 1 && self.buf.starts_with('\u{feff}') {
                self.buf.drain(..'\u{feff}'.len_utf8());
            }
            if !self.buf.trim().is_empty() {
                break;
            }
        }
        let first = self.line;
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut depth = 0usize;
        loop {
            let line = std::mem::take(&mut self.buf);
            let text = line.strip_suffix('\n').unwrap_or(&line);
            let text = text.strip_suffix('\r').unwrap_or(text);
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                if quoted {
                    match c {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            cell.push('"');
                        }
                        '"' => quoted = false,
                        _ => cell.push(c),
                    }
                    continue;
                }
                match c {
                    '"' if cell.trim().is_empty() && depth == 0 => {
                        cell.clear();
                        quoted = true;
                    }
                    '[' if depth > 0 || cell.trim().is_empty() => {
                        depth += 1;
                        cell.push(c);
                    }
                    ']' if depth > 0 => {
                        depth -= 1;
                        cell.push(c);
                    }
                    ',' if depth == 0 => cells.push(std::mem::take(&mut cell)),
                    _ => cell.push(c),
                }
            }
            if !quoted && depth == 0 {
                break;
            }
            // A quoted cell (or an open bracket) goes on on the next line.
            cell.push('\n');
            if !self.read_line()? {
                let what = if quoted {
                    "a quoted cell is never closed (a '\"' is missing)"
                } else {
                    "a '[' is never closed"
                };
                return Err(CliError::bad_input(format!(
                    "line {first} of {}: {what}",
                    self.file
                )));
            }
        }
        cells.push(cell);
        Ok(Some((first, cells)))
    }
}

/// Rows of a CSV file for one collection.
#[derive(Debug)]
pub struct CsvSource<R> {
    records: CsvRecords<R>,
    schema: CollectionSchema,
    /// File column of each schema field (see [`map_columns`]).
    columns: Vec<Option<usize>>,
    width: usize,
    keys: Option<KeyCounter>,
}

impl CsvSource<BufReader<File>> {
    pub fn open(
        path: &Path,
        schema: &CollectionSchema,
        id_start: Option<i64>,
    ) -> Result<Self, CliError> {
        let file = File::open(path)
            .map_err(|e| CliError::bad_input(format!("cannot open {}: {e}", path.display())))?;
        Self::new(
            BufReader::with_capacity(1 << 20, file),
            &path.display().to_string(),
            schema,
            id_start,
        )
    }
}

impl<R: BufRead> CsvSource<R> {
    /// Reads the header and checks it against the schema.
    pub fn new(
        reader: R,
        file: &str,
        schema: &CollectionSchema,
        id_start: Option<i64>,
    ) -> Result<Self, CliError> {
        let mut records = CsvRecords::new(reader, file);
        let (_, header) = records.next_record()?.ok_or_else(|| {
            CliError::bad_input(format!(
                "{file} is empty; it needs a header row naming the fields, e.g. id,vector"
            ))
        })?;
        let names: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
        let columns = map_columns(file, &names, schema, id_start.is_some(), &[])?;
        Ok(Self {
            records,
            schema: schema.clone(),
            columns,
            width: names.len(),
            keys: id_start.map(KeyCounter::new),
        })
    }
}

impl<R: BufRead + Send> RowSource for CsvSource<R> {
    fn total_rows(&self) -> Option<u64> {
        None
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RowBatch>, CliError> {
        let mut batch = RowBatch::empty(&self.schema);
        while batch.num_rows < max_rows {
            let Some((line, cells)) = self.records.next_record()? else {
                break;
            };
            let at = |m: String| {
                CliError::bad_input(format!("line {line} of {}: {m}", self.records.file))
            };
            if cells.len() != self.width {
                return Err(at(format!(
                    "{} cells, but the header names {} columns",
                    cells.len(),
                    self.width
                )));
            }
            for ((field, column), source) in self
                .schema
                .fields()
                .iter()
                .zip(&mut batch.columns)
                .zip(&self.columns)
            {
                if let Some(i) = source {
                    push_cell(column, field, &cells[*i]).map_err(at)?;
                }
            }
            batch.num_rows += 1;
        }
        if batch.num_rows == 0 {
            return Ok(None);
        }
        if let Some(keys) = &mut self.keys
            && let Some(pk) = self.schema.fields().iter().position(|f| f.is_primary_key)
            && self.columns[pk].is_none()
        {
            batch.columns[pk] = crate::columns::Column::Long(keys.take(batch.num_rows)?);
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::source::tests::{minimal, schema};
    use crate::columns::Column;

    fn source<'a>(text: &'a str, s: &CollectionSchema) -> Result<CsvSource<&'a [u8]>, CliError> {
        CsvSource::new(text.as_bytes(), "data.csv", s, None)
    }

    fn read_all(text: &str, s: &CollectionSchema) -> Result<Vec<RowBatch>, CliError> {
        let mut src = source(text, s)?;
        let mut out = Vec::new();
        while let Some(b) = src.next_batch(2)? {
            out.push(b);
        }
        Ok(out)
    }

    #[test]
    fn records_split_on_commas_outside_quotes_and_brackets() {
        let text = "a,b\n1,[1.5,2]\n\n2,\"x, \"\"y\"\"\"\r\n3,\"multi\nline\"\n";
        let mut r = CsvRecords::new(text.as_bytes(), "t.csv");
        let all: Vec<_> = std::iter::from_fn(|| r.next_record().expect("valid")).collect();
        assert_eq!(
            all,
            vec![
                (1, vec!["a".to_owned(), "b".to_owned()]),
                (2, vec!["1".to_owned(), "[1.5,2]".to_owned()]),
                (4, vec!["2".to_owned(), "x, \"y\"".to_owned()]),
                (5, vec!["3".to_owned(), "multi\nline".to_owned()]),
            ]
        );
        let mut r = CsvRecords::new("a\n\"open\n".as_bytes(), "t.csv");
        r.next_record().expect("header");
        let e = r.next_record().expect_err("unclosed quote");
        assert_eq!(
            e.message,
            "line 2 of t.csv: a quoted cell is never closed (a '\"' is missing)"
        );
    }

    #[test]
    fn rows_come_in_batches_with_every_field() {
        let s = schema(2);
        let text = "year,title,vector,id\n1999,a,\"[0.5,1]\",7\n2000,b,0.25 2,8\n2001,,[1,1],9\n";
        let batches = read_all(text, &s).expect("valid");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].num_rows, 2);
        assert_eq!(batches[0].columns[0], Column::Long(vec![7, 8]));
        assert_eq!(
            batches[0].columns[1],
            Column::Vector {
                dim: 2,
                values: vec![0.5, 1.0, 0.25, 2.0].into()
            }
        );
        assert_eq!(
            batches[0].columns[2],
            Column::Str(vec!["a".into(), "b".into()])
        );
        assert_eq!(batches[1].columns[3], Column::Int(vec![2001]));
    }

    #[test]
    fn a_wrong_dimension_names_the_line_and_the_field() {
        let s = minimal(3);
        let e = read_all("id,vector\n1,[1,2,3]\n2,[1,2]\n", &s).expect_err("wrong dim");
        assert_eq!(e.code, crate::cli::error::ExitCode::BadInput);
        assert_eq!(
            e.message,
            "line 3 of data.csv: field \"vector\" has 2 numbers, the collection wants 3"
        );
    }

    #[test]
    fn bad_headers_and_rows_are_refused() {
        let s = minimal(2);
        let e = source("id,vector,extra\n", &s).expect_err("unknown column");
        assert!(
            e.message
                .starts_with("data.csv: column \"extra\" is not a field"),
            "{}",
            e.message
        );
        let e = source("", &s).expect_err("empty");
        assert!(e.message.starts_with("data.csv is empty"), "{}", e.message);
        let e = source("id,id,vector\n", &s).expect_err("twice");
        assert_eq!(e.message, "data.csv: column \"id\" appears twice");
        let e = read_all("id,vector\n1,[1,2],3\n", &s).expect_err("too many cells");
        assert_eq!(
            e.message,
            "line 2 of data.csv: 3 cells, but the header names 2 columns"
        );
        let e = read_all("id,vector\nx,[1,2]\n", &s).expect_err("bad key");
        assert_eq!(
            e.message,
            "line 2 of data.csv: field \"id\": \"x\" is not a whole number"
        );
    }

    #[test]
    fn keys_are_numbered_when_the_file_has_none() {
        let s = minimal(1);
        let mut src = CsvSource::new("vector\n[1]\n[2]\n[3]\n".as_bytes(), "v.csv", &s, Some(100))
            .expect("header");
        let a = src.next_batch(2).expect("ok").expect("rows");
        let b = src.next_batch(2).expect("ok").expect("rows");
        assert_eq!(a.columns[0], Column::Long(vec![100, 101]));
        assert_eq!(b.columns[0], Column::Long(vec![102]));
        assert!(src.next_batch(2).expect("ok").is_none());
    }
}
