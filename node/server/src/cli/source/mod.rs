//! Where inserted rows come from: CSV, NumPy `.npy` and Parquet files, or random
//! rows for the schema. Every source checks what it reads against the collection
//! schema and names the line (or row), the field and the fix when it does not fit,
//! before anything is sent.

pub mod csv;
pub mod npy;
pub mod parquet;
pub mod random;

use std::path::{Path, PathBuf};

use milvus_like_api::schema::{CollectionSchema, FieldSchema, FieldType};

use super::error::CliError;
use crate::columns::{Column, RowBatch};

/// Rows read in batches, on a blocking thread.
pub trait RowSource: Send {
    /// How many rows the source holds, when it knows (for the progress bar).
    fn total_rows(&self) -> Option<u64>;
    /// The next at most `max_rows` rows, `None` at the end.
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RowBatch>, CliError>;
}

/// The kinds of file `insert --file` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Csv,
    Npy,
    Parquet,
}

impl FileFormat {
    /// From the file name's extension.
    pub fn of(path: &Path) -> Result<Self, CliError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(Self::Csv),
            Some("npy") => Ok(Self::Npy),
            Some("parquet" | "pq") => Ok(Self::Parquet),
            _ => Err(CliError::usage(format!(
                "cannot tell the format of {} from its name; name it .csv, .npy or .parquet, \
                 or pass --format",
                path.display()
            ))),
        }
    }
}

/// Where primary keys come from when the file has none.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    /// Number the rows from this key on.
    pub id_start: Option<i64>,
    /// A 1-D `.npy` file of INT64 keys, one per row (for `.npy` vectors).
    pub ids_file: Option<PathBuf>,
}

/// Opens `path` as a source of rows of `schema`.
pub fn open(
    path: &Path,
    format: FileFormat,
    schema: &CollectionSchema,
    keys: &KeyOptions,
    batch_rows: usize,
) -> Result<Box<dyn RowSource>, CliError> {
    if keys.ids_file.is_some() && format != FileFormat::Npy {
        return Err(CliError::usage(
            "--ids goes with an .npy file of vectors; CSV and Parquet files carry their keys in \
             a column",
        ));
    }
    Ok(match format {
        FileFormat::Csv => Box::new(csv::CsvSource::open(path, schema, keys.id_start)?),
        FileFormat::Npy => Box::new(npy::NpySource::open(path, schema, keys)?),
        FileFormat::Parquet => Box::new(parquet::ParquetSource::open(
            path,
            schema,
            keys.id_start,
            batch_rows,
        )?),
    })
}

/// Primary keys handed out in order from a start.
#[derive(Debug, Clone)]
pub struct KeyCounter {
    next: i64,
}

impl KeyCounter {
    pub fn new(start: i64) -> Self {
        Self { next: start }
    }

    pub fn take(&mut self, n: usize) -> Result<Vec<i64>, CliError> {
        let start = self.next;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.next = start.checked_add(n).ok_or_else(|| {
            CliError::usage(format!(
                "the keys from {start} on run past the largest INT64; pick a smaller --id-start"
            ))
        })?;
        Ok((start..self.next).collect())
    }
}

/// Which column of the file holds each schema field: `map[i]` is the file column
/// of `schema.fields()[i]`; `None` only for the primary key when keys are numbered
/// (`--id-start`). Columns named in `ignored` (e.g. `_ts` of exported segment
/// files) are skipped; any other column must be a field.
pub fn map_columns(
    file: &str,
    names: &[String],
    schema: &CollectionSchema,
    numbered_keys: bool,
    ignored: &[&str],
) -> Result<Vec<Option<usize>>, CliError> {
    let field_names = || schema.field_list();
    for (i, name) in names.iter().enumerate() {
        if ignored.contains(&name.as_str()) {
            continue;
        }
        if schema.fields().iter().all(|f| f.name != *name) {
            return Err(CliError::bad_input(format!(
                "{file}: column {name:?} is not a field of collection {:?} (its fields: {}); \
                 rename or remove the column",
                schema.name,
                field_names()
            )));
        }
        if names[..i].contains(name) {
            return Err(CliError::bad_input(format!(
                "{file}: column {name:?} appears twice"
            )));
        }
    }
    schema
        .fields()
        .iter()
        .map(|f| match names.iter().position(|n| *n == f.name) {
            Some(i) => Ok(Some(i)),
            None if f.is_primary_key && numbered_keys => Ok(None),
            None if f.is_primary_key => Err(CliError::bad_input(format!(
                "{file} has no column {:?} (the primary key); add it, or pass --id-start N to \
                 number the rows from N",
                f.name
            ))),
            None => Err(CliError::bad_input(format!(
                "{file} has no column {:?}; collection {:?} has the fields {}",
                f.name,
                schema.name,
                field_names()
            ))),
        })
        .collect()
}

/// Appends the value `cell` to `column` (of `field`'s type). The error says what
/// is wrong with the value; the caller adds where it is.
pub fn push_cell(column: &mut Column, field: &FieldSchema, cell: &str) -> Result<(), String> {
    let name = &field.name;
    let text = cell.trim();
    match (column, field.ty) {
        (Column::Bool(v), _) => v.push(match text.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(format!("field {name:?}: {text:?} is not true or false")),
        }),
        (Column::Int(v), ty) => {
            let x = parse_int(name, text, ty)?;
            v.push(i32::try_from(x).map_err(|_| out_of_range(name, x, ty))?);
        }
        (Column::Long(v), ty) => v.push(parse_int(name, text, ty)?),
        (Column::Float(v), _) => v.push(
            text.parse()
                .map_err(|_| format!("field {name:?}: {text:?} is not a number"))?,
        ),
        (Column::Double(v), _) => v.push(
            text.parse()
                .map_err(|_| format!("field {name:?}: {text:?} is not a number"))?,
        ),
        (Column::Str(v), FieldType::VarChar { max_length }) => {
            check_length(name, cell, max_length)?;
            v.push(cell.to_owned());
        }
        (Column::Str(v), _) => v.push(cell.to_owned()),
        (Column::Vector { dim, values }, _) => {
            values.extend(&parse_vector(name, text, *dim)?.into());
        }
    }
    Ok(())
}

fn parse_int(name: &str, text: &str, ty: FieldType) -> Result<i64, String> {
    let x: i64 = text
        .parse()
        .map_err(|_| format!("field {name:?}: {text:?} is not a whole number"))?;
    check_int(name, x, ty)?;
    Ok(x)
}

/// Refuses integers that do not fit the field's type.
pub fn check_int(name: &str, x: i64, ty: FieldType) -> Result<(), String> {
    let (lo, hi) = match ty {
        FieldType::Int8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
        FieldType::Int16 => (i64::from(i16::MIN), i64::from(i16::MAX)),
        FieldType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    if x < lo || x > hi {
        return Err(out_of_range(name, x, ty));
    }
    Ok(())
}

fn out_of_range(name: &str, x: i64, ty: FieldType) -> String {
    format!("field {name:?}: {x} does not fit {}", ty.name())
}

/// Refuses strings longer than the field's `max_length` bytes.
pub fn check_length(name: &str, s: &str, max_length: u32) -> Result<(), String> {
    if s.len() > max_length as usize {
        return Err(format!(
            "field {name:?} is {} bytes long, longer than its max_length {max_length}",
            s.len()
        ));
    }
    Ok(())
}

/// `[0.1, 0.2]` (JSON) or `0.1 0.2` (space separated), exactly `dim` finite numbers.
fn parse_vector(name: &str, text: &str, dim: u32) -> Result<Vec<f32>, String> {
    let inner = match text.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or_else(|| {
            format!("field {name:?}: the vector starts with '[' but does not end with ']'")
        })?,
        None => text,
    };
    let out = inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|part| {
            part.parse::<f32>()
                .map_err(|_| format!("field {name:?}: {part:?} is not a number"))
        })
        .collect::<Result<Vec<f32>, String>>()?;
    if out.len() != dim as usize {
        return Err(wrong_dim(name, out.len(), dim));
    }
    if out.iter().any(|x| !x.is_finite()) {
        return Err(format!(
            "field {name:?}: the vector holds a NaN or infinite number"
        ));
    }
    Ok(out)
}

/// `field "vector" has 127 numbers, the collection wants 128`
pub fn wrong_dim(name: &str, got: usize, dim: u32) -> String {
    format!("field {name:?} has {got} numbers, the collection wants {dim}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use milvus_like_api::proto;

    /// `id` INT64 key, `vector` FLOAT_VECTOR(dim), `title` VARCHAR(8), `year` INT16.
    pub fn schema(dim: u32) -> CollectionSchema {
        use proto::DataType as D;
        let field = |name: &str, ty: D| proto::FieldSchema {
            name: name.into(),
            data_type: ty.into(),
            ..Default::default()
        };
        let mut id = field("id", D::Int64);
        id.is_primary_key = true;
        let mut vector = field("vector", D::FloatVector);
        vector.dim = dim;
        let mut title = field("title", D::Varchar);
        title.max_length = 8;
        CollectionSchema::try_from(proto::CollectionSchema {
            name: "docs".into(),
            description: String::new(),
            fields: vec![id, vector, title, field("year", D::Int16)],
            ..proto::CollectionSchema::default()
        })
        .expect("valid")
    }

    /// `id` and `vector` only.
    pub fn minimal(dim: u32) -> CollectionSchema {
        CollectionSchema::vectors_only("docs", dim).expect("valid")
    }

    #[test]
    fn cells_parse_by_type_and_name_what_is_wrong() {
        let s = schema(3);
        let f = s.fields();
        let mut v = Column::empty(f[1].ty);
        push_cell(&mut v, &f[1], "[0.5, 1, -2e3]").expect("json");
        push_cell(&mut v, &f[1], " 1 2 3 ").expect("spaces");
        assert_eq!(
            v,
            Column::Vector {
                dim: 3,
                values: vec![0.5, 1.0, -2000.0, 1.0, 2.0, 3.0].into()
            }
        );
        assert_eq!(
            push_cell(&mut v, &f[1], "[1,2]"),
            Err("field \"vector\" has 2 numbers, the collection wants 3".into())
        );
        assert_eq!(
            push_cell(&mut v, &f[1], "[1,x,3]"),
            Err("field \"vector\": \"x\" is not a number".into())
        );
        assert!(push_cell(&mut v, &f[1], "[1,2,3").is_err());
        assert!(push_cell(&mut v, &f[1], "1 NaN 3").is_err());
        assert_eq!(v.len(), 2, "refused cells leave nothing behind");
        let mut year = Column::empty(f[3].ty);
        assert_eq!(
            push_cell(&mut year, &f[3], "70000"),
            Err("field \"year\": 70000 does not fit INT16".into())
        );
        let mut title = Column::empty(f[2].ty);
        assert_eq!(
            push_cell(&mut title, &f[2], "123456789"),
            Err("field \"title\" is 9 bytes long, longer than its max_length 8".into())
        );
    }

    #[test]
    fn columns_map_to_fields_or_the_file_is_refused() {
        let s = minimal(2);
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            map_columns("f.csv", &names(&["vector", "id"]), &s, false, &[]).expect("ok"),
            vec![Some(1), Some(0)]
        );
        let e = map_columns("f.csv", &names(&["id", "vector", "colour"]), &s, false, &[])
            .expect_err("unknown column");
        assert_eq!(e.code, super::super::error::ExitCode::BadInput);
        assert_eq!(
            e.message,
            "f.csv: column \"colour\" is not a field of collection \"docs\" (its fields: id, \
             vector); rename or remove the column"
        );
        let e = map_columns("f.csv", &names(&["vector"]), &s, false, &[]).expect_err("no key");
        assert!(e.message.contains("--id-start"), "{}", e.message);
        assert_eq!(
            map_columns("f.csv", &names(&["vector"]), &s, true, &[]).expect("numbered"),
            vec![None, Some(0)]
        );
    }
}
