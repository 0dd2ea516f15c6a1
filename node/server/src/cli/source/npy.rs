//! NumPy `.npy` files: a 2-D array of float32 (or float64, converted) holds one
//! vector per row. The format: the magic `\x93NUMPY`, a major and minor version
//! byte, the header length (u16 little-endian in version 1, u32 in 2 and 3), and
//! the header, a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 128), }`, padded
//! with spaces to a multiple of 64 bytes; then the values, row-major.
//!
//! The file holds only vectors, so the primary keys are numbered from
//! `--id-start` (default 0) or read from a 1-D INT64 `.npy` file (`--ids`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use milvus_like_api::schema::{CollectionSchema, FieldType};
use milvus_like_api::vectors::Floats;

use super::{KeyCounter, KeyOptions, RowSource};
use crate::cli::error::CliError;
use crate::columns::{Column, RowBatch};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element types we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    I64,
    I32,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }
}

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Bytes before the data.
    pub data_offset: u64,
}

/// Reads and checks the preamble and header of an `.npy` stream.
pub fn read_header(reader: &mut impl Read, file: &str) -> Result<NpyHeader, CliError> {
    let bad = |m: String| CliError::bad_input(format!("{file} {m}"));
    let mut preamble = [0u8; 8];
    reader.read_exact(&mut preamble).map_err(|_| {
        bad("is not a NumPy .npy file: it is shorter than the 8-byte preamble".into())
    })?;
    if &preamble[..6] != MAGIC {
        return Err(bad(
            "is not a NumPy .npy file (it does not start with \\x93NUMPY); save the vectors \
             with numpy.save"
                .into(),
        ));
    }
    let (len, prefix) = match preamble[6] {
        1 => {
            let mut b = [0u8; 2];
            reader
                .read_exact(&mut b)
                .map_err(|_| bad("is truncated inside its header".into()))?;
            (u64::from(u16::from_le_bytes(b)), 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            reader
                .read_exact(&mut b)
                .map_err(|_| bad("is truncated inside its header".into()))?;
            (u64::from(u32::from_le_bytes(b)), 12)
        }
        v => {
            return Err(bad(format!(
                "has .npy format version {v}.{}; versions 1, 2 and 3 are read",
                preamble[7]
            )));
        }
    };
    if len > 1 << 20 {
        return Err(bad(format!(
            "claims a header of {len} bytes; it is corrupt"
        )));
    }
    let mut text = vec![0u8; len as usize];
    reader
        .read_exact(&mut text)
        .map_err(|_| bad("is truncated inside its header".into()))?;
    let text = String::from_utf8_lossy(&text);
    let dict = parse_dict(&text)
        .map_err(|m| bad(format!("has a malformed header ({m}): {}", text.trim())))?;
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| bad(format!("has no {key:?} in its header")))
    };
    let descr = get("descr")?;
    let dtype = match descr {
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        "<i8" => Dtype::I64,
        "<i4" => Dtype::I32,
        other => {
            return Err(bad(format!(
                "holds {other:?} values; vectors must be little-endian float32 ('<f4') or \
                 float64 ('<f8'), keys int64 ('<i8'): convert with .astype(numpy.float32)"
            )));
        }
    };
    match get("fortran_order")? {
        "False" => {}
        "True" => {
            return Err(bad(
                "is in Fortran (column-major) order; save numpy.ascontiguousarray(a) instead"
                    .into(),
            ));
        }
        other => {
            return Err(bad(format!(
                "has fortran_order {other:?}, not True or False"
            )));
        }
    }
    let shape = get("shape")?;
    let shape = shape
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| bad(format!("has a malformed shape {shape:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader {
        dtype,
        shape,
        data_offset: prefix + len,
    })
}

/// The keys and values of the header dict, values as written (strings unquoted).
fn parse_dict(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut rest = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("it is not a {...} dict")?
        .trim();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (key, after) = quoted(rest).ok_or("a key is not a quoted string")?;
        rest = after
            .trim_start()
            .strip_prefix(':')
            .ok_or("a ':' is missing")?
            .trim_start();
        let (value, after) = if rest.starts_with('\'') || rest.starts_with('"') {
            quoted(rest).ok_or("a string is not closed")?
        } else if rest.starts_with('(') {
            let end = rest.find(')').ok_or("a '(' is not closed")?;
            (rest[..=end].to_owned(), &rest[end + 1..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].trim().to_owned(), &rest[end..])
        };
        out.push((key, value));
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

/// A `'...'` or `"..."` string at the start of `text`, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let q = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let end = text[1..].find(q)? + 1;
    Some((text[1..end].to_owned(), &text[end + 1..]))
}

/// Vectors from a 2-D `.npy` file, keys numbered or from `--ids`.
#[derive(Debug)]
pub struct NpySource<R> {
    reader: R,
    file: String,
    schema: CollectionSchema,
    dtype: Dtype,
    dim: u32,
    rows: u64,
    read: u64,
    keys: Keys,
}

#[derive(Debug)]
enum Keys {
    Numbered(KeyCounter),
    Listed(std::vec::IntoIter<i64>),
}

impl NpySource<BufReader<File>> {
    pub fn open(
        path: &Path,
        schema: &CollectionSchema,
        keys: &KeyOptions,
    ) -> Result<Self, CliError> {
        let name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| CliError::bad_input(format!("cannot open {name}: {e}")))?;
        let size = file.metadata().map(|m| m.len()).ok();
        let keys = match &keys.ids_file {
            Some(ids) => Keys::Listed(read_keys(ids)?.into_iter()),
            None => Keys::Numbered(KeyCounter::new(keys.id_start.unwrap_or(0))),
        };
        Self::new(
            BufReader::with_capacity(1 << 20, file),
            &name,
            size,
            schema,
            keys,
        )
    }
}

impl<R: Read> NpySource<R> {
    fn new(
        mut reader: R,
        file: &str,
        size: Option<u64>,
        schema: &CollectionSchema,
        keys: Keys,
    ) -> Result<Self, CliError> {
        let bad = |m: String| CliError::bad_input(format!("{file} {m}"));
        if let Some(extra) = schema
            .fields()
            .iter()
            .find(|f| !f.is_primary_key && !matches!(f.ty, FieldType::FloatVector { .. }))
        {
            return Err(bad(format!(
                "holds vectors only, but collection {:?} also has the field {:?}; insert from a \
                 CSV or Parquet file instead",
                schema.name, extra.name
            )));
        }
        let (_, dim) = schema.vector_field();
        let header = read_header(&mut reader, file)?;
        if !matches!(header.dtype, Dtype::F32 | Dtype::F64) {
            return Err(bad(
                "holds integers; the vectors must be float32 ('<f4') or float64 ('<f8')".into(),
            ));
        }
        let [rows, cols] = header.shape[..] else {
            return Err(bad(format!(
                "has shape {:?}; it must be 2-D: (rows, {dim})",
                header.shape
            )));
        };
        if cols != u64::from(dim) {
            return Err(bad(format!(
                "holds vectors of {cols} numbers, the collection wants {dim}"
            )));
        }
        let need = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(header.dtype.size() as u64))
            .and_then(|n| n.checked_add(header.data_offset))
            .ok_or_else(|| bad(format!("has an impossible shape ({rows}, {cols})")))?;
        if let Some(size) = size
            && size < need
        {
            let whole = (size.saturating_sub(header.data_offset))
                / (cols * header.dtype.size() as u64).max(1);
            return Err(bad(format!(
                "is truncated: its header promises {rows} rows of {cols} numbers ({need} \
                 bytes) but the file has {size} bytes ({whole} whole rows)"
            )));
        }
        if let Keys::Listed(ids) = &keys
            && ids.len() as u64 != rows
        {
            return Err(CliError::bad_input(format!(
                "--ids holds {} keys but {file} holds {rows} vectors; give one key per vector",
                ids.len()
            )));
        }
        Ok(Self {
            reader,
            file: file.to_owned(),
            schema: schema.clone(),
            dtype: header.dtype,
            dim,
            rows,
            read: 0,
            keys,
        })
    }
}

/// The keys of a 1-D INT64 (or INT32) `.npy` file.
fn read_keys(path: &Path) -> Result<Vec<i64>, CliError> {
    let (shape, keys) = read_ints(path, "keys")?;
    if shape.len() != 1 {
        return Err(CliError::bad_input(format!(
            "{} has shape {shape:?}; the keys must be 1-D",
            path.display()
        )));
    }
    Ok(keys)
}

/// The shape and values of an INT64 (or INT32) `.npy` file of `what`.
pub fn read_ints(path: &Path, what: &str) -> Result<(Vec<u64>, Vec<i64>), CliError> {
    let name = path.display().to_string();
    let mut reader = BufReader::new(
        File::open(path).map_err(|e| CliError::bad_input(format!("cannot open {name}: {e}")))?,
    );
    let header = read_header(&mut reader, &name)?;
    if !matches!(header.dtype, Dtype::I64 | Dtype::I32) {
        return Err(CliError::bad_input(format!(
            "{name} holds floats; the {what} must be int64 ('<i8'): convert with .astype(numpy.int64)"
        )));
    }
    let n = header
        .shape
        .iter()
        .try_fold(1u64, |n, d| n.checked_mul(*d))
        .ok_or_else(|| {
            CliError::bad_input(format!("{name} has an impossible shape {:?}", header.shape))
        })?;
    let size = header.dtype.size();
    // Check the promise against the file before allocating for it.
    let want = n
        .checked_mul(size as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| {
            CliError::bad_input(format!("{name} has an impossible shape {:?}", header.shape))
        })?;
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    if file_len.saturating_sub(header.data_offset) < want as u64 {
        return Err(CliError::bad_input(format!(
            "{name} is truncated: its header promises {n} {what} ({want} bytes) but the file has {file_len} bytes"
        )));
    }
    let mut bytes = vec![0u8; want];
    reader.read_exact(&mut bytes).map_err(|_| {
        CliError::bad_input(format!(
            "{name} is truncated: its header promises {n} {what}"
        ))
    })?;
    let values = bytes
        .chunks_exact(size)
        .map(|b| match b.try_into() {
            Ok(b8) => i64::from_le_bytes(b8),
            Err(_) => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        })
        .collect();
    Ok((header.shape, values))
}

impl<R: Read + Send> RowSource for NpySource<R> {
    fn total_rows(&self) -> Option<u64> {
        Some(self.rows)
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RowBatch>, CliError> {
        let n = (self.rows - self.read).min(max_rows as u64) as usize;
        if n == 0 {
            return Ok(None);
        }
        let dim = self.dim as usize;
        let mut bytes = vec![0u8; n * dim * self.dtype.size()];
        self.reader.read_exact(&mut bytes).map_err(|e| {
            CliError::bad_input(format!(
                "{} is truncated after {} of its {} rows: {e}",
                self.file, self.read, self.rows
            ))
        })?;
        let values: Floats = match self.dtype {
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            // Little-endian float32: the bytes as read.
            _ => Floats::from_le_bytes(bytes.into())
                .map_err(|e| CliError::bad_input(format!("{}: {e}", self.file)))?,
        };
        if let Some(i) = values.first_non_finite() {
            return Err(CliError::bad_input(format!(
                "{} row {}: the vector holds a NaN or infinite number",
                self.file,
                self.read + (i / dim) as u64
            )));
        }
        let keys = match &mut self.keys {
            Keys::Numbered(counter) => counter.take(n)?,
            Keys::Listed(ids) => ids.by_ref().take(n).collect(),
        };
        self.read += n as u64;
        let mut columns = Vec::with_capacity(2);
        let mut values = Some(values);
        let mut keys = Some(keys);
        for f in self.schema.fields() {
            columns.push(if f.is_primary_key {
                Column::Long(keys.take().unwrap_or_default())
            } else {
                Column::Vector {
                    dim: self.dim,
                    values: values.take().unwrap_or_default(),
                }
            });
        }
        Ok(Some(RowBatch {
            columns,
            num_rows: n,
        }))
    }
}

/// An `.npy` file's bytes (version 1) of `rows` rows of `values`, for tests.
#[cfg(test)]
pub fn encode(descr: &str, shape: &str, values: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([1, 0]);
    out.extend(u16::try_from(header.len()).unwrap_or(0).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(values);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::source::tests::{minimal, schema};

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn open(
        bytes: Vec<u8>,
        s: &CollectionSchema,
    ) -> Result<NpySource<std::io::Cursor<Vec<u8>>>, CliError> {
        let size = bytes.len() as u64;
        NpySource::new(
            std::io::Cursor::new(bytes),
            "v.npy",
            Some(size),
            s,
            Keys::Numbered(KeyCounter::new(10)),
        )
    }

    #[test]
    fn headers_parse() {
        let bytes = encode("<f4", "(3, 2)", &[]);
        let h = read_header(&mut bytes.as_slice(), "v.npy").expect("valid");
        assert_eq!(h.dtype, Dtype::F32);
        assert_eq!(h.shape, vec![3, 2]);
        assert_eq!(h.data_offset, 128);
        let bytes = encode("<i8", "(5,)", &[]);
        assert_eq!(
            read_header(&mut bytes.as_slice(), "k.npy")
                .expect("valid")
                .shape,
            vec![5]
        );
    }

    #[test]
    fn vectors_come_in_batches_with_numbered_keys() {
        let s = minimal(2);
        let mut src = open(
            encode("<f4", "(3, 2)", &f32s(&[1., 2., 3., 4., 5., 6.])),
            &s,
        )
        .expect("valid");
        assert_eq!(src.total_rows(), Some(3));
        let a = src.next_batch(2).expect("ok").expect("rows");
        assert_eq!(a.columns[0], Column::Long(vec![10, 11]));
        assert_eq!(
            a.columns[1],
            Column::Vector {
                dim: 2,
                values: vec![1., 2., 3., 4.].into()
            }
        );
        let b = src.next_batch(2).expect("ok").expect("rows");
        assert_eq!(b.num_rows, 1);
        assert!(src.next_batch(2).expect("ok").is_none());
        // float64 is converted.
        let f64s: Vec<u8> = [0.5f64, 1.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut src = open(encode("<f8", "(1, 2)", &f64s), &s).expect("valid");
        let c = src.next_batch(8).expect("ok").expect("rows");
        assert_eq!(
            c.columns[1],
            Column::Vector {
                dim: 2,
                values: vec![0.5, 1.5].into()
            }
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let s = minimal(2);
        let msg = |bytes: Vec<u8>| open(bytes, &s).expect_err("refused").message;
        assert_eq!(
            msg(encode("<f4", "(3, 3)", &f32s(&[0.; 9]))),
            "v.npy holds vectors of 3 numbers, the collection wants 2"
        );
        assert_eq!(
            msg(encode("<f4", "(3, 2)", &f32s(&[0.; 5]))),
            "v.npy is truncated: its header promises 3 rows of 2 numbers (152 bytes) but the \
             file has 148 bytes (2 whole rows)"
        );
        assert_eq!(
            msg(encode("<f4", "(6,)", &f32s(&[0.; 6]))),
            "v.npy has shape [6]; it must be 2-D: (rows, 2)"
        );
        assert!(msg(encode(">f4", "(1, 2)", &f32s(&[0.; 2]))).contains("'<f4'"));
        // A shape no file can hold is refused, not multiplied into an overflow.
        assert_eq!(
            msg(encode("<f4", "(9223372036854775807, 2)", &[])),
            "v.npy has an impossible shape (9223372036854775807, 2)"
        );
        assert!(msg(b"PK\x03\x04 not numpy".to_vec()).contains("does not start with \\x93NUMPY"));
        assert!(msg(b"\x93NU".to_vec()).contains("shorter than the 8-byte preamble"));
        let mut broken = encode("<f4", "(1, 2)", &f32s(&[0.; 2]));
        broken.truncate(20);
        assert_eq!(msg(broken), "v.npy is truncated inside its header");
        let bad_header = {
            let mut b = encode("<f4", "(1, 2)", &f32s(&[0.; 2]));
            let at = b.iter().position(|c| *c == b'{').expect("dict");
            b[at] = b'[';
            b
        };
        assert!(
            msg(bad_header).starts_with("v.npy has a malformed header (it is not a {...} dict)")
        );
        let e = open(encode("<f4", "(1, 2)", &f32s(&[0.; 2])), &schema(2)).expect_err("scalars");
        assert!(
            e.message.contains("also has the field \"title\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_key_file_promising_more_than_it_holds_is_refused_before_allocating() {
        let dir = std::env::temp_dir().join(format!("npy-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ids.npy");
        std::fs::write(&path, encode("<i8", "(1000000000000000,)", &[0; 16])).expect("write");
        let e = read_keys(&path).expect_err("refused");
        assert!(
            e.message
                .contains("is truncated: its header promises 1000000000000000 keys"),
            "{}",
            e.message
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_file_cut_short_while_reading_is_reported() {
        let s = minimal(2);
        let bytes = encode("<f4", "(3, 2)", &f32s(&[1.; 4]));
        // Size unknown (a pipe): the shortfall shows when the rows are read.
        let mut src = NpySource::new(
            std::io::Cursor::new(bytes),
            "v.npy",
            None,
            &s,
            Keys::Numbered(KeyCounter::new(0)),
        )
        .expect("header");
        let e = src.next_batch(10).expect_err("short");
        assert!(
            e.message
                .starts_with("v.npy is truncated after 0 of its 3 rows"),
            "{}",
            e.message
        );
    }
}
