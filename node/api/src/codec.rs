//! The gRPC codec of every generated client and server: prost's, except that an
//! `InsertRequest` is decoded by [`crate::wire::insert_request`], which copies
//! its vectors in one pass instead of one float at a time. Everything else, and
//! every encoding, is prost's own, so the wire format is unchanged.

use std::any::{Any, TypeId};
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf as _;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder};

use crate::proto::InsertRequest;

/// prost's codec with [`FastDecoder`] (named in `build.rs`).
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
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = FastDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        FastDecoder(ProstDecoder::default())
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
