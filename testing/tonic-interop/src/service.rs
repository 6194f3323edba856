//! The `grpc.testing.TestService` handlers.
//!
//! Only the message-level behaviour lives here. Metadata echo, header
//! reflection and the `x-rgrpc-sleep-ms` delay are done for every method by
//! the HTTP-level layer in `layer.rs`, so they also apply to error responses
//! and to unimplemented methods. Compression is done there too: handlers
//! learn whether each request message was compressed, and say which
//! response messages to compress, through the call's [`CallCompression`].

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::compression::CallCompression;
use crate::pb::test_service_server::TestService;
use crate::pb::{
    BoolValue, EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest,
    SimpleResponse, StreamingInputCallRequest, StreamingInputCallResponse,
    StreamingOutputCallRequest, StreamingOutputCallResponse,
};

/// Responses queued ahead of the HTTP/2 writer per streaming call.
const STREAM_BUFFER: usize = 4;

type OutputItem = Result<StreamingOutputCallResponse, Status>;

/// The interop `TestService` implementation.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct InteropTestService;

fn payload(size: i32) -> Payload {
    Payload {
        r#type: PayloadType::Compressable as i32,
        body: vec![0u8; size.max(0) as usize],
    }
}

/// The status a request asks for, if it asks for a non-OK one.
fn requested_status(status: &Option<EchoStatus>) -> Option<Status> {
    match status {
        Some(s) if s.code != 0 => Some(Status::new(Code::from_i32(s.code), s.message.clone())),
        _ => None,
    }
}

fn is_true(value: &Option<BoolValue>) -> bool {
    value.as_ref().is_some_and(|b| b.value)
}

/// The call's compression state (a default one, which knows of no
/// compressed message, when the service runs without the layer).
fn call_compression<T>(request: &Request<T>) -> CallCompression {
    request
        .extensions()
        .get::<CallCompression>()
        .cloned()
        .unwrap_or_default()
}

/// `expect_compressed` in both directions: present and true needs a
/// compressed message, present and false an uncompressed one.
fn check_compression(expect: &Option<BoolValue>, compressed: bool) -> Result<(), Status> {
    match expect {
        Some(b) if b.value && !compressed => Err(Status::invalid_argument(
            "expected a compressed request message, but it was not compressed",
        )),
        Some(b) if !b.value && compressed => Err(Status::invalid_argument(
            "expected an uncompressed request message, but it was compressed",
        )),
        _ => Ok(()),
    }
}

fn unary(request: Request<SimpleRequest>) -> Result<Response<SimpleResponse>, Status> {
    let call = call_compression(&request);
    let req = request.into_inner();
    check_compression(&req.expect_compressed, call.request_compressed(0))?;
    if let Some(status) = requested_status(&req.response_status) {
        return Err(status);
    }
    call.next_response(is_true(&req.response_compressed));
    Ok(Response::new(SimpleResponse {
        payload: Some(payload(req.response_size)),
        ..Default::default()
    }))
}

/// Sends one response per parameter entry, each after its interval and
/// compressed as the entry asks (when the response headers allowed it).
/// Returns false once the receiving side is gone (call cancelled).
async fn send_responses(
    tx: &mpsc::Sender<OutputItem>,
    call: &CallCompression,
    params: &[ResponseParameters],
) -> bool {
    for p in params {
        if p.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(p.interval_us as u64)).await;
        }
        let resp = StreamingOutputCallResponse {
            payload: Some(payload(p.size)),
        };
        call.next_response(is_true(&p.compressed));
        if tx.send(Ok(resp)).await.is_err() {
            return false;
        }
    }
    true
}

/// Answers one `StreamingOutputCallRequest` of a duplex call. Returns false
/// when the call is over (error status sent, or cancelled).
async fn answer_duplex_request(
    tx: &mpsc::Sender<OutputItem>,
    call: &CallCompression,
    req: &StreamingOutputCallRequest,
) -> bool {
    if !send_responses(tx, call, &req.response_parameters).await {
        return false;
    }
    if let Some(status) = requested_status(&req.response_status) {
        let _ = tx.send(Err(status)).await;
        return false;
    }
    true
}

#[tonic::async_trait]
impl TestService for InteropTestService {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        unary(request)
    }

    async fn cacheable_unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        unary(request)
    }

    type StreamingOutputCallStream = ReceiverStream<OutputItem>;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let call = call_compression(&request);
        let req = request.into_inner();
        // Decided before the response headers go out: they carry the
        // response's grpc-encoding.
        if req
            .response_parameters
            .iter()
            .any(|p| is_true(&p.compressed))
        {
            call.may_compress();
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            answer_duplex_request(&tx, &call, &req).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let call = call_compression(&request);
        let mut input = request.into_inner();
        let mut total: usize = 0;
        let mut index = 0;
        while let Some(req) = input.message().await? {
            check_compression(&req.expect_compressed, call.request_compressed(index))?;
            index += 1;
            total += req.payload.map_or(0, |p| p.body.len());
        }
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    type FullDuplexCallStream = ReceiverStream<OutputItem>;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let call = call_compression(&request);
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                match input.message().await {
                    Ok(Some(req)) => {
                        if !answer_duplex_request(&tx, &call, &req).await {
                            return;
                        }
                    }
                    // Client half-closed: end with OK.
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type HalfDuplexCallStream = ReceiverStream<OutputItem>;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        let call = call_compression(&request);
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            let mut buffered = Vec::new();
            loop {
                match input.message().await {
                    Ok(Some(req)) => buffered.push(req),
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
            for req in &buffered {
                if !answer_duplex_request(&tx, &call, req).await {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is not implemented",
        ))
    }
}
