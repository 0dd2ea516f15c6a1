//! Encoding a proxy's insert-log messages: each is a slice of a client's
//! request, split by channel. [`encode_insert_batch_gathering`] copies each
//! vector once, from the request straight into the message, instead of first
//! gathering the rows into a column and then copying that column into the
//! message. Everything else about the messages (and all decoding) is prost's,
//! with vectors held as shared bytes ([`crate::vectors`]).

use crate::proto::InsertBatch;
use crate::vectors::FloatVectorArray;
use prost::Message as _;
use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// Field numbers in `log.proto` / `common.proto`.
const INSERT_BATCH_COLUMNS: u32 = 7;
const FIELD_DATA_FLOAT_VECTORS: u32 = 8;

/// Rows of a row-major block of `dim`-float vectors, given where a batch cut from
/// a larger one has a vector column: [`encode_insert_batch_gathering`] copies them
/// from the block straight into the message, with no column built in between.
#[derive(Debug, Clone, Copy)]
pub struct GatheredVectors<'a> {
    pub dim: u32,
    /// The block's little-endian bytes: row `i` is
    /// `values[i * dim * 4..(i + 1) * dim * 4]`.
    pub values: &'a [u8],
    /// The rows of the block this column holds, in order.
    pub rows: &'a [usize],
}

impl GatheredVectors<'_> {
    fn bytes(&self) -> usize {
        self.rows.len() * self.dim as usize * 4
    }
}

/// The bytes of `batch.encode_to_vec()` with, for each `(i, rows)` of
/// `gathered`, column `i` holding those rows (its own `FloatVectors` value is
/// ignored: leave it empty). A proxy splitting a request's rows over channels
/// writes each message this way, copying each vector once. Rows out of the
/// block's range panic: the caller computed them from the block.
pub fn encode_insert_batch_gathering(
    batch: &InsertBatch,
    gathered: &[(usize, GatheredVectors<'_>)],
) -> Vec<u8> {
    use prost::encoding::{int64, message, uint32, uint64};
    let gathered_at = |i: usize| gathered.iter().find(|(at, _)| *at == i).map(|(_, g)| g);
    let capacity =
        batch.encoded_len() + gathered.iter().map(|(_, g)| g.bytes() + 16).sum::<usize>();
    let mut buf = Vec::with_capacity(capacity);
    // As prost does: fields in tag order, proto3 defaults left out.
    if batch.collection_id != 0 {
        int64::encode(1, &batch.collection_id, &mut buf);
    }
    if batch.partition_id != 0 {
        int64::encode(2, &batch.partition_id, &mut buf);
    }
    if batch.segment_id != 0 {
        int64::encode(3, &batch.segment_id, &mut buf);
    }
    if batch.channel != 0 {
        uint32::encode(4, &batch.channel, &mut buf);
    }
    if batch.first_ts != 0 {
        uint64::encode(5, &batch.first_ts, &mut buf);
    }
    if batch.num_rows != 0 {
        uint32::encode(6, &batch.num_rows, &mut buf);
    }
    for (i, column) in batch.columns.iter().enumerate() {
        match gathered_at(i) {
            Some(g) => encode_gathered_column(&column.field_name, g, &mut buf),
            None => message::encode(INSERT_BATCH_COLUMNS, column, &mut buf),
        }
    }
    buf
}

/// What prost writes for a `FieldData` named `name` holding `FloatVectors` of
/// the gathered rows.
fn encode_gathered_column(name: &str, g: &GatheredVectors<'_>, buf: &mut impl BufMut) {
    let bytes = g.bytes();
    let array = FloatVectorArray::encoded_len_of(g.dim, bytes);
    let name_len = if name.is_empty() {
        0
    } else {
        key_len(1) + encoded_len_varint(name.len() as u64) + name.len()
    };
    encode_key(INSERT_BATCH_COLUMNS, WireType::LengthDelimited, buf);
    encode_varint(
        (name_len + key_len(FIELD_DATA_FLOAT_VECTORS) + encoded_len_varint(array as u64) + array)
            as u64,
        buf,
    );
    if !name.is_empty() {
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(name.len() as u64, buf);
        buf.put_slice(name.as_bytes());
    }
    encode_key(FIELD_DATA_FLOAT_VECTORS, WireType::LengthDelimited, buf);
    encode_varint(array as u64, buf);
    FloatVectorArray::encode_raw_with(g.dim, bytes, buf, |buf| {
        let row = g.dim as usize * 4;
        for &r in g.rows {
            buf.put_slice(&g.values[r * row..(r + 1) * row]);
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::proto::FieldData;
    use crate::proto::field_data::Data;
    use crate::proto::{BoolArray, DoubleArray, FloatArray, IntArray, LongArray, StringArray};
    use crate::vectors::Floats;
    use proptest::prelude::*;

    use super::*;

    fn column() -> impl Strategy<Value = FieldData> {
        let data = prop_oneof![
            prop::collection::vec(any::<bool>(), 0..20)
                .prop_map(|values| Data::Bools(BoolArray { values })),
            prop::collection::vec(any::<i32>(), 0..20)
                .prop_map(|values| Data::Ints(IntArray { values })),
            prop::collection::vec(any::<i64>(), 0..20)
                .prop_map(|values| Data::Longs(LongArray { values })),
            prop::collection::vec(any::<f32>(), 0..20)
                .prop_map(|values| Data::Floats(FloatArray { values })),
            prop::collection::vec(any::<f64>(), 0..20)
                .prop_map(|values| Data::Doubles(DoubleArray { values })),
            prop::collection::vec(".{0,8}", 0..5)
                .prop_map(|values| Data::Strings(StringArray { values })),
            (0u32..300, prop::collection::vec(any::<f32>(), 0..600)).prop_map(|(dim, values)| {
                Data::FloatVectors(FloatVectorArray {
                    dim,
                    values: values.into(),
                })
            }),
        ];
        ("[a-z]{0,6}", prop::option::of(data))
            .prop_map(|(field_name, data)| FieldData { field_name, data })
    }

    fn batch() -> impl Strategy<Value = InsertBatch> {
        (
            any::<(i64, i64, i64, u32, u64, u32)>(),
            prop::collection::vec(column(), 0..4),
        )
            .prop_map(|((c, p, s, ch, ts, n), columns)| InsertBatch {
                collection_id: c,
                partition_id: p,
                segment_id: s,
                channel: ch,
                first_ts: ts,
                num_rows: n,
                columns,
            })
    }

    fn vector_column(name: &str, dim: u32, values: Floats) -> FieldData {
        FieldData {
            field_name: name.to_owned(),
            data: Some(Data::FloatVectors(FloatVectorArray { dim, values })),
        }
    }

    /// `rows` of `block` (row-major, `dim` floats a row) as one column's floats.
    fn taken(block: &[f32], dim: usize, rows: &[usize]) -> Floats {
        rows.iter()
            .flat_map(|r| block[r * dim..(r + 1) * dim].iter().copied())
            .collect()
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]

        /// Rows gathered from a block encode as the batch holding those rows does.
        #[test]
        fn gathered_rows_encode_as_the_rows_themselves(
            b in batch(),
            dim in 0u32..40,
            block_rows in 0usize..60,
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..80),
            name in "[a-z]{0,6}",
            at in any::<prop::sample::Index>(),
        ) {
            let d = dim as usize;
            let block: Vec<f32> = (0..block_rows * d).map(|i| i as f32 * 0.25 - 7.0).collect();
            let rows: Vec<usize> = if block_rows == 0 {
                Vec::new()
            } else {
                picks.iter().map(|p| p.index(block_rows)).collect()
            };
            let mut expected = b.clone();
            let at = at.index(b.columns.len() + 1);
            expected.columns.insert(at, vector_column(&name, dim, taken(&block, d, &rows)));
            let mut placeholder = b;
            placeholder.columns.insert(at, vector_column(&name, dim, Floats::default()));
            let bytes = Floats::from(block);
            let gathered = GatheredVectors { dim, values: bytes.as_le_bytes(), rows: &rows };
            prop_assert_eq!(
                encode_insert_batch_gathering(&placeholder, &[(at, gathered)]),
                expected.encode_to_vec()
            );
        }
    }

    /// Rows of one float up to rows wider than a page.
    #[test]
    fn gathered_long_rows_are_encoded_as_prost_does() {
        for dim in [1usize, 1000, 1024, 1500, 3000] {
            let block: Vec<f32> = (0..dim * 5).map(|i| i as f32 * 0.5 - 3.0).collect();
            let rows = [4, 0, 0, 2, 3, 1, 4];
            let batch = |c| InsertBatch {
                collection_id: 1,
                num_rows: 7,
                columns: vec![c],
                ..InsertBatch::default()
            };
            let bytes = Floats::from(block.as_slice());
            let gathered = GatheredVectors {
                dim: dim as u32,
                values: bytes.as_le_bytes(),
                rows: &rows,
            };
            assert_eq!(
                encode_insert_batch_gathering(
                    &batch(vector_column("vec", dim as u32, Floats::default())),
                    &[(0, gathered)]
                ),
                batch(vector_column("vec", dim as u32, taken(&block, dim, &rows))).encode_to_vec(),
                "dim {dim}"
            );
        }
    }
}
