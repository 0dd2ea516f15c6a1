//! Decoding the messages that carry rows: a proxy's `InsertRequest` and an
//! insert-log `InsertBatch`. Almost all of either is the values of its
//! FLOAT_VECTOR column: one packed run of little-endian floats. prost decodes a
//! packed field by pushing one value at a time into a growing `Vec` (a capacity
//! check and a bounds check per float, and every doubling copies and faults in
//! fresh pages): ~20% of a data node's CPU under load, and ~21% of a standalone
//! process's (the proxy decoding requests). Here that run is copied into a `Vec`
//! allocated at its final size, in one pass; every other field (and any unusual
//! encoding of this one) goes through prost's own per-field decoding, so the
//! result is what `Message::decode` returns.
//!
//! Encoding them is the mirror image: prost writes a packed float field with one
//! `put_f32_le` per float; [`encode_insert_batch`] and [`encode_insert_request`]
//! write the same bytes with the floats converted and copied in blocks.

use crate::proto::field_data::Data;
use crate::proto::{FieldData, FloatVectorArray, InsertBatch, InsertRequest};
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut};
use prost::encoding::{
    DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint,
};

/// Why a message is not an `InsertBatch`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Prost(#[from] prost::DecodeError),
    #[error("{0}")]
    Malformed(&'static str),
}

/// Field numbers in `log.proto` / `proxy.proto` / `common.proto`.
const INSERT_BATCH_COLUMNS: u32 = 7;
const INSERT_REQUEST_COLUMNS: u32 = 3;
const FIELD_DATA_FLOAT_VECTORS: u32 = 8;
const FLOAT_VECTOR_VALUES: u32 = 2;

/// Same result as `InsertBatch::decode(buf)`, faster on vectors.
pub fn insert_batch(mut buf: &[u8]) -> Result<InsertBatch, DecodeError> {
    let mut batch = InsertBatch::default();
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag == INSERT_BATCH_COLUMNS && wire_type == WireType::LengthDelimited {
            let column = length_delimited(&mut buf)?;
            batch.columns.push(field_data(column)?);
        } else {
            batch.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(batch)
}

/// Same result as `InsertRequest::decode(buf)`, faster on vectors.
pub fn insert_request(mut buf: &[u8]) -> Result<InsertRequest, DecodeError> {
    let mut request = InsertRequest::default();
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag == INSERT_REQUEST_COLUMNS && wire_type == WireType::LengthDelimited {
            let column = length_delimited(&mut buf)?;
            request.columns.push(field_data(column)?);
        } else {
            request.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(request)
}

fn field_data(mut buf: &[u8]) -> Result<FieldData, DecodeError> {
    let mut field = FieldData::default();
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag == FIELD_DATA_FLOAT_VECTORS && wire_type == WireType::LengthDelimited {
            let body = length_delimited(&mut buf)?;
            // A repeated message field merges into the one before it, as in prost.
            let mut vectors = match field.data.take() {
                Some(Data::FloatVectors(v)) => v,
                _ => FloatVectorArray::default(),
            };
            float_vectors(body, &mut vectors)?;
            field.data = Some(Data::FloatVectors(vectors));
        } else {
            field.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(field)
}

fn float_vectors(mut buf: &[u8], vectors: &mut FloatVectorArray) -> Result<(), DecodeError> {
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag == FLOAT_VECTOR_VALUES && wire_type == WireType::LengthDelimited {
            let packed = length_delimited(&mut buf)?;
            let (floats, rest) = packed.as_chunks::<4>();
            if !rest.is_empty() {
                return Err(DecodeError::Malformed(
                    "packed floats whose length is not a multiple of 4",
                ));
            }
            // Exact for the one packed run a writer sends; amortised if a
            // message splits the floats over many (quadratic otherwise).
            if vectors.values.is_empty() {
                vectors.values.reserve_exact(floats.len());
            } else {
                vectors.values.reserve(floats.len());
            }
            vectors
                .values
                .extend(floats.iter().map(|b| f32::from_le_bytes(*b)));
        } else {
            // `dim`, unpacked floats, unknown fields.
            vectors.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(())
}

/// The same bytes as `batch.encode_to_vec()`, faster on vectors.
pub fn encode_insert_batch(batch: &InsertBatch) -> Vec<u8> {
    encode_insert_batch_gathering(batch, &[])
}

/// Rows of a row-major block of `dim`-float vectors, given where a batch cut from
/// a larger one has a vector column: [`encode_insert_batch_gathering`] copies them
/// from the block straight into the message, with no column built in between.
#[derive(Debug, Clone, Copy)]
pub struct GatheredVectors<'a> {
    pub dim: u32,
    /// The block: row `i` is `values[i * dim..(i + 1) * dim]`.
    pub values: &'a [f32],
    /// The rows of the block this column holds, in order.
    pub rows: &'a [usize],
}

/// The bytes of `encode_insert_batch` of `batch` with, for each `(i, rows)` of
/// `gathered`, column `i` holding those rows (its own `FloatVectors` value is
/// ignored: leave it empty). A proxy splitting a request's rows over channels
/// writes each message this way, copying each vector once. Rows out of the
/// block's range panic: the caller computed them from the block.
pub fn encode_insert_batch_gathering(
    batch: &InsertBatch,
    gathered: &[(usize, GatheredVectors<'_>)],
) -> Vec<u8> {
    use prost::encoding::{int64, uint32, uint64};
    let gathered_at = |i: usize| gathered.iter().find(|(at, _)| *at == i).map(|(_, g)| g);
    let capacity = batch.encoded_len()
        + gathered
            .iter()
            .map(|(_, g)| Floats::Rows(g).len() * 4 + 16)
            .sum::<usize>();
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
            Some(g) => encode_vector_column(
                INSERT_BATCH_COLUMNS,
                &column.field_name,
                g.dim,
                Floats::Rows(g),
                &mut buf,
            ),
            None => encode_field_data(INSERT_BATCH_COLUMNS, column, &mut buf),
        }
    }
    buf
}

/// Where the floats of a vector column to encode come from.
#[derive(Clone, Copy)]
enum Floats<'a> {
    /// A column's own values.
    All(&'a [f32]),
    /// Rows gathered from a block.
    Rows(&'a GatheredVectors<'a>),
}

impl Floats<'_> {
    fn len(self) -> usize {
        match self {
            Self::All(values) => values.len(),
            Self::Rows(g) => g.rows.len() * g.dim as usize,
        }
    }

    /// Writes the floats little-endian, converted a block at a time and copied
    /// with one `put_slice` per block.
    fn put(self, buf: &mut impl BufMut) {
        const BLOCK: usize = 1024;
        let mut block = [0u8; BLOCK * 4];
        let mut filled = 0;
        let mut put = |piece: &[f32]| {
            for piece in piece.chunks(BLOCK) {
                if filled + piece.len() > BLOCK {
                    buf.put_slice(&block[..filled * 4]);
                    filled = 0;
                }
                let out = &mut block[filled * 4..(filled + piece.len()) * 4];
                for (out, value) in out.as_chunks_mut::<4>().0.iter_mut().zip(piece) {
                    *out = value.to_le_bytes();
                }
                filled += piece.len();
            }
        };
        match self {
            Self::All(values) => put(values),
            Self::Rows(g) => {
                let dim = g.dim as usize;
                for &row in g.rows {
                    put(&g.values[row * dim..(row + 1) * dim]);
                }
            }
        }
        buf.put_slice(&block[..filled * 4]);
    }
}

/// What prost writes for a `FieldData` named `name` holding `FloatVectors` of
/// `dim` and `floats`, with the floats copied in blocks instead of one
/// `put_f32_le` each.
fn encode_vector_column(tag: u32, name: &str, dim: u32, floats: Floats<'_>, buf: &mut impl BufMut) {
    use prost::encoding::{encoded_len_varint, key_len};
    let bytes = floats.len() * 4;
    let array = if dim == 0 {
        0
    } else {
        key_len(1) + encoded_len_varint(u64::from(dim))
    } + if bytes == 0 {
        0
    } else {
        key_len(FLOAT_VECTOR_VALUES) + encoded_len_varint(bytes as u64) + bytes
    };
    let name_len = if name.is_empty() {
        0
    } else {
        key_len(1) + encoded_len_varint(name.len() as u64) + name.len()
    };
    encode_key(tag, WireType::LengthDelimited, buf);
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
    if dim != 0 {
        prost::encoding::uint32::encode(1, &dim, buf);
    }
    if bytes != 0 {
        encode_key(FLOAT_VECTOR_VALUES, WireType::LengthDelimited, buf);
        encode_varint(bytes as u64, buf);
        floats.put(buf);
    }
}

/// Writes what `request.encode(buf)` writes, faster on vectors (the gRPC
/// encoder of [`crate::codec::FastCodec`]).
pub fn encode_insert_request(request: &InsertRequest, buf: &mut impl BufMut) {
    use prost::encoding::{string, uint32};
    if !request.collection.is_empty() {
        string::encode(1, &request.collection, buf);
    }
    if !request.partition.is_empty() {
        string::encode(2, &request.partition, buf);
    }
    for column in &request.columns {
        encode_field_data(INSERT_REQUEST_COLUMNS, column, buf);
    }
    if request.num_rows != 0 {
        uint32::encode(4, &request.num_rows, buf);
    }
}

fn encode_field_data(tag: u32, column: &FieldData, buf: &mut impl BufMut) {
    match &column.data {
        Some(Data::FloatVectors(vectors)) => encode_vector_column(
            tag,
            &column.field_name,
            vectors.dim,
            Floats::All(&vectors.values),
            buf,
        ),
        _ => prost::encoding::message::encode(tag, column, buf),
    }
}

/// Splits a length-delimited body off the front of `buf`.
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = usize::try_from(decode_varint(buf)?)
        .map_err(|_| DecodeError::Malformed("a length that does not fit in memory"))?;
    if len > buf.len() {
        return Err(DecodeError::Malformed(
            "a length past the end of the message",
        ));
    }
    let (body, rest) = buf.split_at(len);
    *buf = rest;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use crate::proto::{BoolArray, DoubleArray, FloatArray, IntArray, LongArray, StringArray};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

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
            (0u32..300, prop::collection::vec(any::<f32>(), 0..600))
                .prop_map(|(dim, values)| Data::FloatVectors(FloatVectorArray { dim, values })),
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

    /// NaN != NaN: compare the encodings.
    fn same(a: &InsertBatch, b: &InsertBatch) -> bool {
        a.encode_to_vec() == b.encode_to_vec()
    }

    fn config() -> Config {
        Config {
            cases: 256,
            rng_seed: RngSeed::Fixed(4),
            ..Config::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn decodes_what_prost_encodes(b in batch()) {
            let bytes = b.encode_to_vec();
            let ours = insert_batch(&bytes).expect("decodes");
            prop_assert!(same(&ours, &b));
        }

        #[test]
        fn decodes_requests_as_prost_does(
            b in batch(),
            names in ("[a-z]{0,8}", "[a-z]{0,8}"),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let request = InsertRequest {
                collection: names.0,
                partition: names.1,
                columns: b.columns,
                num_rows: b.num_rows,
            };
            let mut bytes = request.encode_to_vec();
            let ours = insert_request(&bytes).expect("decodes");
            prop_assert_eq!(ours.encode_to_vec(), bytes.clone());
            if !bytes.is_empty() {
                let i = flip.0.index(bytes.len());
                bytes[i] ^= flip.1;
            }
            match (insert_request(&bytes), InsertRequest::decode(bytes.as_slice())) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.encode_to_vec(), b.encode_to_vec()),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "ours {a:?}, prost {b:?}"),
            }
        }

        #[test]
        fn encodes_batches_as_prost_does(b in batch()) {
            prop_assert_eq!(encode_insert_batch(&b), b.encode_to_vec());
        }

        #[test]
        fn encodes_requests_as_prost_does(b in batch(), names in ("[a-z]{0,8}", "[a-z]{0,8}")) {
            let request = InsertRequest {
                collection: names.0,
                partition: names.1,
                columns: b.columns,
                num_rows: b.num_rows,
            };
            let mut ours = Vec::new();
            encode_insert_request(&request, &mut ours);
            prop_assert_eq!(ours, request.encode_to_vec());
        }

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
            let mut taken = Vec::new();
            for &r in &rows {
                taken.extend_from_slice(&block[r * d..(r + 1) * d]);
            }
            let mut expected = b.clone();
            let at = at.index(b.columns.len() + 1);
            let column = |values| FieldData {
                field_name: name.clone(),
                data: Some(Data::FloatVectors(FloatVectorArray { dim, values })),
            };
            expected.columns.insert(at, column(taken));
            let mut placeholder = b;
            placeholder.columns.insert(at, column(Vec::new()));
            let gathered = GatheredVectors { dim, values: &block, rows: &rows };
            prop_assert_eq!(
                encode_insert_batch_gathering(&placeholder, &[(at, gathered)]),
                expected.encode_to_vec()
            );
        }

        /// Junk never panics, and whatever decodes, decodes as prost decodes it.
        #[test]
        fn junk_is_refused_like_prost(b in batch(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
            let mut bytes = b.encode_to_vec();
            if !bytes.is_empty() {
                let i = flip.0.index(bytes.len());
                bytes[i] ^= flip.1;
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let ours = insert_batch(&bytes);
            let theirs = InsertBatch::decode(bytes.as_slice());
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => prop_assert!(same(a, b)),
                (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "ours {ours:?}, prost {theirs:?}"),
            }
        }
    }

    /// Runs longer than one block of `Floats::put`, including a partial last block.
    #[test]
    fn long_vector_runs_are_encoded_as_prost_does() {
        for n in [1024, 1025, 3000, 128 * 1000] {
            let batch = InsertBatch {
                collection_id: 1,
                num_rows: 7,
                columns: vec![FieldData {
                    field_name: "vec".into(),
                    data: Some(Data::FloatVectors(FloatVectorArray {
                        dim: 128,
                        values: (0..n).map(|i| i as f32 * 0.5 - 3.0).collect(),
                    })),
                }],
                ..InsertBatch::default()
            };
            assert_eq!(
                encode_insert_batch(&batch),
                batch.encode_to_vec(),
                "{n} floats"
            );
        }
    }

    /// Rows wider than one block of `Floats::put`, and rows that fill it exactly.
    #[test]
    fn gathered_long_rows_are_encoded_as_prost_does() {
        for dim in [1usize, 1000, 1024, 1500, 3000] {
            let block: Vec<f32> = (0..dim * 5).map(|i| i as f32 * 0.5 - 3.0).collect();
            let rows = [4, 0, 0, 2, 3, 1, 4];
            let column = |values| FieldData {
                field_name: "vec".into(),
                data: Some(Data::FloatVectors(FloatVectorArray {
                    dim: dim as u32,
                    values,
                })),
            };
            let taken = rows
                .iter()
                .flat_map(|r| block[r * dim..(r + 1) * dim].iter().copied())
                .collect();
            let batch = |c| InsertBatch {
                collection_id: 1,
                num_rows: 7,
                columns: vec![c],
                ..InsertBatch::default()
            };
            let gathered = GatheredVectors {
                dim: dim as u32,
                values: &block,
                rows: &rows,
            };
            assert_eq!(
                encode_insert_batch_gathering(&batch(column(Vec::new())), &[(0, gathered)]),
                batch(column(taken)).encode_to_vec(),
                "dim {dim}"
            );
        }
    }

    #[test]
    fn split_and_unpacked_floats_are_appended() {
        // Field 8 (float_vectors) holding dim = 2, a packed run of 2 floats, one
        // unpacked float, then another packed run of 1 float.
        let mut body = vec![0x08, 2];
        body.extend([0x12, 8]);
        body.extend(1.0f32.to_le_bytes());
        body.extend(2.0f32.to_le_bytes());
        body.push(0x15);
        body.extend(3.0f32.to_le_bytes());
        body.extend([0x12, 4]);
        body.extend(4.0f32.to_le_bytes());
        let mut column = vec![0x42, u8::try_from(body.len()).expect("short")];
        column.extend(body);
        let mut message = vec![0x3a, u8::try_from(column.len()).expect("short")];
        message.extend(column);
        let ours = insert_batch(&message).expect("decodes");
        assert_eq!(
            ours.columns[0].data,
            Some(Data::FloatVectors(FloatVectorArray {
                dim: 2,
                values: vec![1.0, 2.0, 3.0, 4.0]
            }))
        );
        assert!(same(
            &ours,
            &InsertBatch::decode(message.as_slice()).expect("prost decodes")
        ));
    }

    #[test]
    fn a_packed_run_of_odd_length_is_refused() {
        let column = [0x42, 4, 0x12, 2, 0, 0];
        let mut message = vec![0x3a, 6];
        message.extend(column);
        assert!(insert_batch(&message).is_err());
        assert!(InsertBatch::decode(message.as_slice()).is_err());
    }
}
