//! `wasi:io/poll` and `wasi:io/streams` for plugins called directly, on
//! the worker's own stack rather than on a fiber (see
//! [`add_direct_to_linker`](super::add_direct_to_linker)).
//!
//! A direct call cannot wait: there is no fiber to suspend. The streams
//! such a plugin can reach are Weir's own — its stdout and stderr go to the
//! log and are always ready, its stdin is empty — so every operation
//! completes at once. Each one runs WASI's own (asynchronous)
//! implementation and polls it once; one that would have to wait traps
//! with a message saying so, instead of blocking the worker. (A plugin that
//! can wait, on a timer or the network, imports something the direct
//! linker does not have, and is called on a fiber.)

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::Result;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll::{Host as AsyncPoll, HostPollable as AsyncPollable};
use wasmtime_wasi::p2::bindings::io::streams::{
    Host as AsyncStreams, HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
    StreamError as AsyncStreamError,
};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError, StreamResult};

/// The resource table of a plugin called directly.
pub struct DirectIo<'a>(pub &'a mut ResourceTable);

/// [`HasData`] for [`DirectIo`].
pub struct DirectIoData;

impl HasData for DirectIoData {
    type Data<'a> = DirectIo<'a>;
}

/// Run `operation` to its end if it needs no waiting; a trap if it would
/// have to wait, which a plugin called directly cannot do.
pub(super) fn at_once<T>(operation: impl Future<Output = T>) -> Result<T> {
    match pin!(operation).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Ok(value),
        Poll::Pending => Err(wasmtime::format_err!(
            "a plugin called without a fiber had to wait (on a stream, a pollable or the shared state)"
        )),
    }
}

/// [`at_once`] for an operation that returns a stream result.
fn stream_at_once<T>(operation: impl Future<Output = StreamResult<T>>) -> StreamResult<T> {
    at_once(operation).map_err(StreamError::Trap)?
}

impl streams::Host for DirectIo<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> Result<streams::StreamError> {
        Ok(match AsyncStreams::convert_stream_error(self.0, err)? {
            AsyncStreamError::LastOperationFailed(e) => streams::StreamError::LastOperationFailed(e),
            AsyncStreamError::Closed => streams::StreamError::Closed,
        })
    }
}

impl streams::HostOutputStream for DirectIo<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> Result<()> {
        at_once(AsyncOutput::drop(self.0, stream))?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        AsyncOutput::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        AsyncOutput::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        stream_at_once(AsyncOutput::blocking_write_and_flush(self.0, stream, bytes))
    }

    fn blocking_write_zeroes_and_flush(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        stream_at_once(AsyncOutput::blocking_write_zeroes_and_flush(self.0, stream, len))
    }

    fn subscribe(&mut self, stream: Resource<DynOutputStream>) -> Result<Resource<DynPollable>> {
        AsyncOutput::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        AsyncOutput::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        AsyncOutput::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        stream_at_once(AsyncOutput::blocking_flush(self.0, stream))
    }

    fn splice(&mut self, dst: Resource<DynOutputStream>, src: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        AsyncOutput::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        stream_at_once(AsyncOutput::blocking_splice(self.0, dst, src, len))
    }
}

impl streams::HostInputStream for DirectIo<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> Result<()> {
        at_once(AsyncInput::drop(self.0, stream))?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        AsyncInput::read(self.0, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        stream_at_once(AsyncInput::blocking_read(self.0, stream, len))
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        AsyncInput::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        stream_at_once(AsyncInput::blocking_skip(self.0, stream, len))
    }

    fn subscribe(&mut self, stream: Resource<DynInputStream>) -> Result<Resource<DynPollable>> {
        AsyncInput::subscribe(self.0, stream)
    }
}

impl poll::Host for DirectIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> Result<Vec<u32>> {
        at_once(AsyncPoll::poll(self.0, pollables))?
    }
}

impl poll::HostPollable for DirectIo<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> Result<bool> {
        at_once(AsyncPollable::ready(self.0, pollable))?
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> Result<()> {
        at_once(AsyncPollable::block(self.0, pollable))?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> Result<()> {
        AsyncPollable::drop(self.0, pollable)
    }
}
