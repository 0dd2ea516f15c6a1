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

use crate::proto::field_data::Data;
use crate::proto::{FieldData, FloatVectorArray, InsertBatch, InsertRequest};
use prost::Message as _;
use prost::bytes::Buf as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint};

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
