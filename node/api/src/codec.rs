//! The gRPC codec of every generated client and server: prost's, except that an
//! `InsertRequest` is decoded by [`crate::wire::insert_request`] and encoded by
//! [`crate::wire::encode_insert_request`], which copy its vectors in one pass
//! instead of one float at a time. Everything else is prost's own, and the bytes
//! are prost's: the wire format is unchanged.

use std::any::{Any, TypeId};
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf as _;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::proto::InsertRequest;

/// prost's codec with [`FastEncoder`] and [`FastDecoder`] (named in `build.rs`).
#[derive(Debug, Clone, Copy)]
pub struct FastCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for FastCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for FastCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = FastEncoder<T>;
    type Decoder = FastDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        FastEncoder(ProstCodec::<T, U>::default().encoder())
    }

    fn decoder(&mut self) -> Self::Decoder {
        FastDecoder(ProstDecoder::default())
    }
}

/// Encodes an `InsertRequest` with [`crate::wire::encode_insert_request`],
/// anything else with prost.
#[derive(Debug)]
pub struct FastEncoder<T>(ProstEncoder<T>);

impl<T: Message + 'static> Encoder for FastEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        if let Some(request) = (&item as &dyn Any).downcast_ref::<InsertRequest>() {
            dst.reserve(request.encoded_len());
            crate::wire::encode_insert_request(request, dst);
            return Ok(());
        }
        self.0.encode(item, dst)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// Decodes an `InsertRequest` with [`crate::wire::insert_request`], anything
/// else with prost.
#[derive(Debug)]
pub struct FastDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default + 'static> Decoder for FastDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if TypeId::of::<U>() != TypeId::of::<InsertRequest>() {
            return self.0.decode(buf);
        }
        let len = buf.remaining();
        // A message is one contiguous buffer; were it not, prost would do.
        if buf.chunk().len() < len {
            return self.0.decode(buf);
        }
        let request = crate::wire::insert_request(&buf.chunk()[..len])
            .map_err(|e| Status::internal(format!("cannot decode the insert request: {e}")))?;
        buf.advance(len);
        let request: Box<dyn Any> = Box::new(request);
        request
            .downcast::<U>()
            .map(|u| Some(*u))
            .map_err(|_| Status::internal("the insert request decoder returned another type"))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
