//! FLOAT_VECTOR values as the bytes they travel in.
//!
//! On the wire a vector column is `FloatVectorArray { uint32 dim = 1; repeated
//! float values = 2; }`: its floats are one packed run of little-endian bytes.
//! prost would decode that run into a `Vec<f32>` one float at a time and encode
//! it one float at a time. [`FloatVectorArray`] is written by hand instead (the
//! generated code refers to it through `extern_path` in `build.rs`) and keeps the
//! run as [`Floats`], a shared byte string:
//! - decoding takes the run with `Buf::copy_to_bytes`, which shares the received
//!   buffer when it is a `Bytes` (a gRPC request, a record of the embedded log)
//!   and copies it once otherwise (a Kafka message);
//! - encoding writes it with one `put_slice`;
//! - the data node hands the same bytes to Arrow as a `FixedSizeBinary` column.
//!
//! The wire format is unchanged: what prost's generated code writes for the
//! proto, this writes, and what it reads, this reads (unpacked floats too).

use std::fmt;

use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len, skip_field,
    uint32,
};

/// Little-endian `f32`s in a shared, immutable byte string. Row-major when it
/// holds vectors: row `i` of dimension `d` is floats `i * d..(i + 1) * d`.
/// Two are equal when their bytes are (so a NaN equals itself).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Floats(Bytes);

/// A byte string whose length is not a whole number of floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} bytes is not a whole number of 4-byte floats")]
pub struct NotFloats(pub usize);

impl Floats {
    /// The floats whose little-endian bytes are `bytes` (shared, not copied).
    pub fn from_le_bytes(bytes: Bytes) -> Result<Self, NotFloats> {
        if bytes.len().is_multiple_of(4) {
            Ok(Self(bytes))
        } else {
            Err(NotFloats(bytes.len()))
        }
    }

    /// Number of floats.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The little-endian bytes.
    pub fn as_le_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The little-endian bytes, shared.
    pub fn into_le_bytes(self) -> Bytes {
        self.0
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        self.0
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.iter().collect()
    }

    /// Keeps the first `len` floats (all when there are fewer).
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len.saturating_mul(4));
    }

    /// Row `i` of these floats taken as rows of `dim`, as its little-endian bytes.
    pub fn row_le_bytes(&self, dim: usize, i: usize) -> Option<&[u8]> {
        self.0.get(i * dim * 4..(i + 1) * dim * 4)
    }

    /// Row `i` of these floats taken as rows of `dim`; `None` past the end.
    pub fn row(&self, dim: usize, i: usize) -> Option<impl ExactSizeIterator<Item = f32> + '_> {
        let bytes = self.row_le_bytes(dim, i)?;
        Some(
            bytes
                .as_chunks::<4>()
                .0
                .iter()
                .map(|b| f32::from_le_bytes(*b)),
        )
    }

    /// Rows `rows` of these floats taken as rows of `dim`, in that order (a
    /// copy). Panics on a row out of range, as slicing does.
    pub fn gather_rows(&self, dim: usize, rows: &[usize]) -> Self {
        let row = dim * 4;
        let mut out = BytesMut::with_capacity(rows.len() * row);
        for &r in rows {
            out.put_slice(&self.0[r * row..(r + 1) * row]);
        }
        Self(out.freeze())
    }

    /// Appends `other`'s floats. Shares them when these are empty; otherwise
    /// grows these bytes in place when they are not shared (copying them once
    /// when they are), so that appending many pieces costs linear time, as a
    /// `Vec`'s `extend` does.
    pub fn extend(&mut self, other: &Floats) {
        if self.is_empty() {
            *self = other.clone();
        } else {
            self.extend_from_le_bytes(&other.0);
        }
    }

    fn extend_from_le_bytes(&mut self, bytes: &[u8]) {
        let mut joined = match std::mem::take(&mut self.0).try_into_mut() {
            Ok(unique) => unique,
            Err(shared) => {
                let mut copy = BytesMut::with_capacity(shared.len() + bytes.len());
                copy.put_slice(&shared);
                copy
            }
        };
        joined.extend_from_slice(bytes);
        self.0 = joined.freeze();
    }

    /// The index of the first NaN or infinite value. The common case, none, is
    /// checked branch-free over blocks, so that the compiler tests many floats per
    /// instruction; a search that stops at the first bad value tests one at a
    /// time (it took 8.8% of a proxy's CPU under load).
    pub fn first_non_finite(&self) -> Option<usize> {
        const EXPONENT: u32 = 0x7f80_0000;
        let finite = |b: &[u8; 4]| u32::from_le_bytes(*b) & EXPONENT != EXPONENT;
        let floats = self.0.as_chunks::<4>().0;
        let all = floats
            .chunks(1024)
            .all(|block| block.iter().fold(true, |ok, b| ok & finite(b)));
        if all {
            None
        } else {
            floats.iter().position(|b| !finite(b))
        }
    }
}

/// Moves the floats' memory into the byte string on a little-endian machine
/// (through Arrow's buffer, which owns it without `unsafe` here); converts them
/// on a big-endian one.
impl From<Vec<f32>> for Floats {
    fn from(values: Vec<f32>) -> Self {
        if cfg!(target_endian = "little") {
            Self(Bytes::from(arrow_buffer::Buffer::from_vec(values)))
        } else {
            Self::from(values.as_slice())
        }
    }
}

impl From<&[f32]> for Floats {
    fn from(values: &[f32]) -> Self {
        let mut bytes = BytesMut::with_capacity(values.len() * 4);
        for v in values {
            bytes.put_f32_le(*v);
        }
        Self(bytes.freeze())
    }
}

impl FromIterator<f32> for Floats {
    fn from_iter<I: IntoIterator<Item = f32>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<f32>>())
    }
}

impl fmt::Debug for Floats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// `common.proto`'s `FloatVectorArray`: `dim`, and the row-major `values`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FloatVectorArray {
    pub dim: u32,
    pub values: Floats,
}

impl fmt::Debug for FloatVectorArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FloatVectorArray")
            .field("dim", &self.dim)
            .field("floats", &self.values.len())
            .finish()
    }
}

/// A decode error of prost's kind. prost makes its constructor available but
/// deprecated (for its generated code); every other error here is prost's own.
#[allow(deprecated)]
fn malformed(what: &'static str) -> prost::DecodeError {
    prost::DecodeError::new(what)
}

const DIM: u32 = 1;
const VALUES: u32 = 2;

impl FloatVectorArray {
    /// Bytes of the `values` field: key, length and the floats, as prost packs
    /// a repeated float (nothing when there are none).
    fn values_len(bytes: usize) -> usize {
        if bytes == 0 {
            0
        } else {
            key_len(VALUES) + encoded_len_varint(bytes as u64) + bytes
        }
    }

    /// The encoded length of a `FloatVectorArray` of `dim` holding `bytes` bytes
    /// of floats (for writers that gather the floats themselves).
    pub fn encoded_len_of(dim: u32, bytes: usize) -> usize {
        let dim = if dim == 0 {
            0
        } else {
            uint32::encoded_len(DIM, &dim)
        };
        dim + Self::values_len(bytes)
    }

    /// Writes what [`prost::Message::encode_raw`] writes for a `FloatVectorArray`
    /// of `dim` and the floats `put` writes, `bytes` of them.
    pub fn encode_raw_with<B: BufMut>(
        dim: u32,
        bytes: usize,
        buf: &mut B,
        put: impl FnOnce(&mut B),
    ) {
        if dim != 0 {
            uint32::encode(DIM, &dim, buf);
        }
        if bytes != 0 {
            encode_key(VALUES, WireType::LengthDelimited, buf);
            encode_varint(bytes as u64, buf);
            put(buf);
        }
    }
}

impl prost::Message for FloatVectorArray {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        Self::encode_raw_with(self.dim, self.values.0.len(), buf, |buf| {
            buf.put_slice(&self.values.0)
        });
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            DIM => uint32::merge(wire_type, &mut self.dim, buf, ctx),
            VALUES if wire_type == WireType::LengthDelimited => {
                // prost's own reading of a length-delimited field: the run is
                // shared with `buf` when that is a `Bytes`, copied once otherwise.
                let mut run = Bytes::new();
                prost::encoding::bytes::merge(wire_type, &mut run, buf, ctx)?;
                let run = Floats::from_le_bytes(run)
                    .map_err(|_| malformed("packed floats whose length is not a multiple of 4"))?;
                self.values.extend(&run);
                Ok(())
            }
            VALUES => {
                // One unpacked float, as proto2 writers send them.
                let mut one = 0f32;
                prost::encoding::float::merge(wire_type, &mut one, buf, ctx)?;
                self.values.extend_from_le_bytes(&one.to_le_bytes());
                Ok(())
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        Self::encoded_len_of(self.dim, self.values.0.len())
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    /// What prost generates for the proto: the reference this type must match.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(uint32, tag = "1")]
        dim: u32,
        #[prost(float, repeated, tag = "2")]
        values: Vec<f32>,
    }

    fn ours(g: &Generated) -> FloatVectorArray {
        FloatVectorArray {
            dim: g.dim,
            values: Floats::from(g.values.as_slice()),
        }
    }

    /// Floats compared by their bits (NaN == NaN).
    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    fn generated() -> impl Strategy<Value = Generated> {
        (0u32..300, prop::collection::vec(any::<f32>(), 0..600))
            .prop_map(|(dim, values)| Generated { dim, values })
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]

        #[test]
        fn encodes_as_prost_does(g in generated()) {
            let a = ours(&g);
            prop_assert_eq!(a.encode_to_vec(), g.encode_to_vec());
            prop_assert_eq!(a.encoded_len(), g.encoded_len());
        }

        /// Junk never panics, and whatever decodes, decodes as prost decodes it.
        #[test]
        fn decodes_as_prost_does(
            g in generated(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut bytes = g.encode_to_vec();
            let decoded = FloatVectorArray::decode(bytes.as_slice()).expect("decodes");
            prop_assert_eq!(&decoded, &ours(&g));
            if !bytes.is_empty() {
                let i = flip.0.index(bytes.len());
                bytes[i] ^= flip.1;
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            match (
                FloatVectorArray::decode(Bytes::from(bytes.clone())),
                Generated::decode(bytes.as_slice()),
            ) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a.dim, b.dim);
                    prop_assert_eq!(bits(&a.values.to_vec()), bits(&b.values));
                }
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "ours {a:?}, prost {b:?}"),
            }
        }
    }

    /// The floats of a message decoded from a `Bytes` are that buffer's bytes.
    #[test]
    fn a_packed_run_is_shared_with_the_buffer() {
        let g = Generated {
            dim: 4,
            values: (0..4000).map(|i| i as f32).collect(),
        };
        let bytes = Bytes::from(g.encode_to_vec());
        let decoded = FloatVectorArray::decode(bytes.clone()).expect("decodes");
        let run = decoded.values.as_le_bytes().as_ptr_range();
        let buffer = bytes.as_ptr_range();
        assert!(run.start >= buffer.start && run.end <= buffer.end);
        assert_eq!(decoded.values.to_vec(), g.values);
    }

    /// The same through the generated messages that hold a vector column.
    #[test]
    fn a_request_decoded_from_bytes_shares_its_vectors() {
        use crate::proto::{FieldData, InsertRequest, field_data::Data};
        let values: Vec<f32> = (0..4000).map(|i| i as f32).collect();
        let request = InsertRequest {
            collection: "c".into(),
            columns: vec![FieldData {
                field_name: "v".into(),
                data: Some(Data::FloatVectors(FloatVectorArray {
                    dim: 4,
                    values: values.clone().into(),
                })),
            }],
            num_rows: 1000,
            ..InsertRequest::default()
        };
        let bytes = Bytes::from(request.encode_to_vec());
        let decoded = InsertRequest::decode(bytes.clone()).expect("decodes");
        assert_eq!(decoded, request);
        let Some(Data::FloatVectors(v)) = &decoded.columns[0].data else {
            panic!("a vector column");
        };
        let run = v.values.as_le_bytes().as_ptr_range();
        let buffer = bytes.as_ptr_range();
        assert!(run.start >= buffer.start && run.end <= buffer.end);
        assert_eq!(v.values.to_vec(), values);
    }

    #[test]
    fn split_and_unpacked_floats_are_appended() {
        // dim = 2, a packed run of 2 floats, one unpacked float, then another
        // packed run of 1 float.
        let mut message = vec![0x08, 2];
        message.extend([0x12, 8]);
        message.extend(1.0f32.to_le_bytes());
        message.extend(2.0f32.to_le_bytes());
        message.push(0x15);
        message.extend(3.0f32.to_le_bytes());
        message.extend([0x12, 4]);
        message.extend(4.0f32.to_le_bytes());
        let decoded = FloatVectorArray::decode(Bytes::from(message.clone())).expect("decodes");
        assert_eq!(decoded.dim, 2);
        assert_eq!(decoded.values.to_vec(), vec![1.0, 2.0, 3.0, 4.0]);
        let reference = Generated::decode(message.as_slice()).expect("prost decodes");
        assert_eq!(reference.values, vec![1.0, 2.0, 3.0, 4.0]);
    }

    /// Many unpacked floats decode in linear time: each is appended in place.
    #[test]
    fn unpacked_floats_grow_in_place() {
        let mut message = Vec::new();
        for i in 0..100_000 {
            message.push(0x15);
            message.extend((i as f32).to_le_bytes());
        }
        let decoded = FloatVectorArray::decode(message.as_slice()).expect("decodes");
        assert_eq!(decoded.values.len(), 100_000);
        assert_eq!(decoded.values.to_vec()[99_999], 99_999.0);
    }

    #[test]
    fn a_packed_run_of_odd_length_is_refused() {
        let message = [0x12, 2, 0, 0];
        assert!(FloatVectorArray::decode(&message[..]).is_err());
        assert!(Generated::decode(&message[..]).is_err());
    }

    #[test]
    fn a_non_finite_value_anywhere_is_found() {
        for len in [0, 1, 1023, 1024, 1025, 5000] {
            let mut values = vec![0.5f32; len];
            assert_eq!(Floats::from(values.as_slice()).first_non_finite(), None);
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    if len == 0 {
                        continue;
                    }
                    values[at] = bad;
                    let floats = Floats::from(values.as_slice());
                    assert_eq!(
                        floats.first_non_finite(),
                        Some(at),
                        "{bad} at {at} of {len}"
                    );
                    values[at] = 0.5;
                }
            }
        }
    }

    #[test]
    fn floats_round_trip_through_bytes() {
        let values = vec![1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE];
        let floats = Floats::from(values.clone());
        assert_eq!(floats.len(), 4);
        assert_eq!(floats.to_vec(), values);
        assert_eq!(
            floats.row(2, 1).expect("row 1").collect::<Vec<_>>(),
            &values[2..4]
        );
        assert!(floats.row(2, 2).is_none(), "past the end");
        assert_eq!(
            floats.gather_rows(1, &[3, 0]).to_vec(),
            [values[3], values[0]]
        );
        let mut short = floats.clone();
        short.truncate(3);
        assert_eq!(short.to_vec(), &values[..3]);
        assert_eq!(
            Floats::from_le_bytes(floats.clone().into_le_bytes()),
            Ok(floats.clone())
        );
        assert_eq!(
            Floats::from_le_bytes(Bytes::from_static(&[0; 5])),
            Err(NotFloats(5))
        );
        let mut twice = floats.clone();
        twice.extend(&floats);
        assert_eq!(twice.len(), 8);
        assert_eq!(floats.len(), 4, "the shared original is unchanged");
    }
}
