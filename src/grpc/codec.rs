//! The messages' codec: prost's, except that a request that is not valid protobuf (a truncated
//! field, a wrong wire type, invalid UTF-8 in a string) is the client's error, INVALID_ARGUMENT,
//! where prost's codec says INTERNAL. Named in `build.rs` for the generated service and client.

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

pub struct StrictCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        StrictCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = MalformedIsInvalid<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MalformedIsInvalid(self.0.decoder())
    }
}

/// prost's decoder with its one error (the bytes are not the message) mapped to INVALID_ARGUMENT.
pub struct MalformedIsInvalid<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for MalformedIsInvalid<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| match status.code() {
            Code::Internal => Status::invalid_argument(format!("the message is not valid protobuf: {}", status.message())),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
