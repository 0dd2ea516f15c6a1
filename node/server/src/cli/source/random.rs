//! `insert --random ROWS`: rows made up for the schema, reproducible with `--seed`.
//! Keys are numbered from `--id-start` (default 0); vector components are uniform
//! in [0, 1); scalars are uniform over their type (strings: letters and digits,
//! up to 16 bytes or the field's max_length).

use milvus_like_api::schema::{CollectionSchema, FieldType};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{KeyCounter, RowSource};
use crate::cli::error::CliError;
use crate::columns::{Column, RowBatch};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

#[derive(Debug)]
pub struct RandomSource {
    schema: CollectionSchema,
    rows: u64,
    made: u64,
    keys: KeyCounter,
    rng: StdRng,
}

impl RandomSource {
    pub fn new(schema: &CollectionSchema, rows: u64, id_start: i64, seed: u64) -> Self {
        Self {
            schema: schema.clone(),
            rows,
            made: 0,
            keys: KeyCounter::new(id_start),
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

impl RowSource for RandomSource {
    fn total_rows(&self) -> Option<u64> {
        Some(self.rows)
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RowBatch>, CliError> {
        let n = (self.rows - self.made).min(max_rows as u64) as usize;
        if n == 0 {
            return Ok(None);
        }
        let rng = &mut self.rng;
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for f in self.schema.fields() {
            columns.push(match f.ty {
                _ if f.is_primary_key => Column::Long(self.keys.take(n)?),
                FieldType::Bool => Column::Bool((0..n).map(|_| rng.random()).collect()),
                FieldType::Int8 => {
                    Column::Int((0..n).map(|_| i32::from(rng.random::<i8>())).collect())
                }
                FieldType::Int16 => {
                    Column::Int((0..n).map(|_| i32::from(rng.random::<i16>())).collect())
                }
                FieldType::Int32 => Column::Int((0..n).map(|_| rng.random()).collect()),
                FieldType::Int64 => Column::Long((0..n).map(|_| rng.random()).collect()),
                FieldType::Float => Column::Float((0..n).map(|_| rng.random()).collect()),
                FieldType::Double => Column::Double((0..n).map(|_| rng.random()).collect()),
                FieldType::VarChar { max_length } => {
                    let longest = max_length.min(16) as usize;
                    Column::Str(
                        (0..n)
                            .map(|_| {
                                let len = rng.random_range(0..=longest);
                                (0..len)
                                    .map(|_| {
                                        char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])
                                    })
                                    .collect()
                            })
                            .collect(),
                    )
                }
                FieldType::Json => Column::Str(
                    (0..n)
                        .map(|_| format!("{{\"n\":{}}}", rng.random::<u16>()))
                        .collect(),
                ),
                FieldType::FloatVector { dim } => Column::Vector {
                    dim,
                    values: (0..n * dim as usize)
                        .map(|_| rng.random())
                        .collect::<Vec<f32>>()
                        .into(),
                },
            });
        }
        self.made += n as u64;
        Ok(Some(RowBatch {
            columns,
            num_rows: n,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::source::tests::schema;

    #[test]
    fn random_rows_fit_the_schema_and_repeat_with_the_seed() {
        let s = schema(4);
        let mut a = RandomSource::new(&s, 5, 100, 7);
        let first = a.next_batch(3).expect("ok").expect("rows");
        let second = a.next_batch(3).expect("ok").expect("rows");
        assert!(a.next_batch(3).expect("ok").is_none());
        assert_eq!(first.num_rows + second.num_rows, 5);
        assert_eq!(first.columns[0], Column::Long(vec![100, 101, 102]));
        // The proxy's own checks accept them.
        crate::columns::RowBatch::from_wire(&s, first.to_wire(&s), 3).expect("valid rows");
        let mut b = RandomSource::new(&s, 5, 100, 7);
        assert_eq!(b.next_batch(3).expect("ok").expect("rows"), first);
    }
}
