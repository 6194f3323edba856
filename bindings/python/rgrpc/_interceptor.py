"""intercept_channel: client interceptors with grpcio's semantics.

Interceptors are given control in the order listed. Each gets a
``continuation(client_call_details, request_or_iterator)`` that proceeds with
the (possibly changed) call details; for unary responses the continuation
returns an object that is both a Call and a Future, for streamed responses a
Call that iterates the responses.
"""

from __future__ import annotations

import collections
import sys

from . import _api


class _ClientCallDetails(
    collections.namedtuple(
        "_ClientCallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    _api.ClientCallDetails,
):
    pass


def _unwrap(details, defaults):
    def get(name):
        return getattr(details, name, getattr(defaults, name))

    return (get("method"), get("timeout"), get("metadata"), get("credentials"),
            get("wait_for_ready"), get("compression"))


class _FailureOutcome(_api.RpcError, _api.Future, _api.Call):
    """What a continuation or interceptor that raised is turned into."""

    def __init__(self, exception, traceback):  # pylint: disable=super-init-not-called
        self._exception = exception
        self._traceback = traceback

    def initial_metadata(self):
        return None

    def trailing_metadata(self):
        return None

    def code(self):
        return _api.StatusCode.INTERNAL

    def details(self):
        return "Exception raised while intercepting the RPC"

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False

    def cancelled(self):
        return False

    def running(self):
        return False

    def done(self):
        return True

    def result(self, ignored_timeout=None):
        raise self._exception

    def exception(self, ignored_timeout=None):
        return self._exception

    def traceback(self, ignored_timeout=None):
        return self._traceback

    def add_done_callback(self, fn):
        fn(self)

    def __iter__(self):
        return self

    def __next__(self):
        raise self._exception

    next = __next__


class _UnaryOutcome(_api.Call, _api.Future):
    """A finished unary RPC: its response and its Call."""

    def __init__(self, response, call):
        self._response = response
        self._call = call

    def initial_metadata(self):
        return self._call.initial_metadata()

    def trailing_metadata(self):
        return self._call.trailing_metadata()

    def code(self):
        return self._call.code()

    def details(self):
        return self._call.details()

    def is_active(self):
        return self._call.is_active()

    def time_remaining(self):
        return self._call.time_remaining()

    def cancel(self):
        return self._call.cancel()

    def add_callback(self, callback):
        return self._call.add_callback(callback)

    def cancelled(self):
        return False

    def running(self):
        return False

    def done(self):
        return True

    def result(self, ignored_timeout=None):
        return self._response

    def exception(self, ignored_timeout=None):
        return None

    def traceback(self, ignored_timeout=None):
        return None

    def add_done_callback(self, fn):
        fn(self)


class _Intercepted(object):
    def __init__(self, thunk, method, interceptor):
        self._thunk = thunk
        self._method = method
        self._interceptor = interceptor

    def _details(self, timeout, metadata, credentials, wait_for_ready, compression):
        return _ClientCallDetails(self._method, timeout, metadata, credentials, wait_for_ready,
                                  compression)


class _InterceptedUnaryUnaryMultiCallable(_Intercepted, _api.UnaryUnaryMultiCallable):
    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        response, _ = self._with_call(request, timeout, metadata, credentials, wait_for_ready,
                                      compression)
        return response

    def with_call(self, request, timeout=None, metadata=None, credentials=None,
                  wait_for_ready=None, compression=None):
        return self._with_call(request, timeout, metadata, credentials, wait_for_ready,
                               compression)

    def _with_call(self, request, timeout, metadata, credentials, wait_for_ready, compression):
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)

        def continuation(new_details, request):
            m, t, md, cr, wfr, comp = _unwrap(new_details, details)
            try:
                response, call = self._thunk(m).with_call(
                    request, timeout=t, metadata=md, credentials=cr, wait_for_ready=wfr,
                    compression=comp)
                return _UnaryOutcome(response, call)
            except _api.RpcError as e:
                return e
            except Exception as e:
                return _FailureOutcome(e, sys.exc_info()[2])

        call = self._interceptor.intercept_unary_unary(continuation, details, request)
        return call.result(), call

    def future(self, request, timeout=None, metadata=None, credentials=None,
               wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)

        def continuation(new_details, request):
            m, t, md, cr, wfr, comp = _unwrap(new_details, details)
            return self._thunk(m).future(request, timeout=t, metadata=md, credentials=cr,
                                         wait_for_ready=wfr, compression=comp)

        try:
            return self._interceptor.intercept_unary_unary(continuation, details, request)
        except Exception as e:
            return _FailureOutcome(e, sys.exc_info()[2])


class _InterceptedUnaryStreamMultiCallable(_Intercepted, _api.UnaryStreamMultiCallable):
    def __call__(self, request, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)

        def continuation(new_details, request):
            m, t, md, cr, wfr, comp = _unwrap(new_details, details)
            return self._thunk(m)(request, timeout=t, metadata=md, credentials=cr,
                                  wait_for_ready=wfr, compression=comp)

        try:
            return self._interceptor.intercept_unary_stream(continuation, details, request)
        except Exception as e:
            return _FailureOutcome(e, sys.exc_info()[2])


class _InterceptedStreamUnaryMultiCallable(_Intercepted, _api.StreamUnaryMultiCallable):
    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        response, _ = self._with_call(request_iterator, timeout, metadata, credentials,
                                      wait_for_ready, compression)
        return response

    def with_call(self, request_iterator, timeout=None, metadata=None, credentials=None,
                  wait_for_ready=None, compression=None):
        return self._with_call(request_iterator, timeout, metadata, credentials,
                               wait_for_ready, compression)

    def _with_call(self, request_iterator, timeout, metadata, credentials, wait_for_ready,
                   compression):
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)

        def continuation(new_details, request_iterator):
            m, t, md, cr, wfr, comp = _unwrap(new_details, details)
            try:
                response, call = self._thunk(m).with_call(
                    request_iterator, timeout=t, metadata=md, credentials=cr,
                    wait_for_ready=wfr, compression=comp)
                return _UnaryOutcome(response, call)
            except _api.RpcError as e:
                return e
            except Exception as e:
                return _FailureOutcome(e, sys.exc_info()[2])

        call = self._interceptor.intercept_stream_unary(continuation, details, request_iterator)
        return call.result(), call

    def future(self, request_iterator, timeout=None, metadata=None, credentials=None,
               wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)

        def continuation(new_details, request_iterator):
            m, t, md, cr, wfr, comp = _unwrap(new_details, details)
            return self._thunk(m).future(request_iterator, timeout=t, metadata=md,
                                         credentials=cr, wait_for_ready=wfr, compression=comp)

        try:
            return self._interceptor.intercept_stream_unary(continuation, details,
                                                            request_iterator)
        except Exception as e:
            return _FailureOutcome(e, sys.exc_info()[2])


class _InterceptedStreamStreamMultiCallable(_Intercepted, _api.StreamStreamMultiCallable):
    def __call__(self, request_iterator, timeout=None, metadata=None, credentials=None,
                 wait_for_ready=None, compression=None):
        details = self._details(timeout, metadata, credentials, wait_for_ready, compression)

        def continuation(new_details, request_iterator):
            m, t, md, cr, wfr, comp = _unwrap(new_details, details)
            return self._thunk(m)(request_iterator, timeout=t, metadata=md, credentials=cr,
                                  wait_for_ready=wfr, compression=comp)

        try:
            return self._interceptor.intercept_stream_stream(continuation, details,
                                                             request_iterator)
        except Exception as e:
            return _FailureOutcome(e, sys.exc_info()[2])


class _InterceptedChannel(_api.Channel):
    def __init__(self, channel, interceptor):
        self._channel = channel
        self._interceptor = interceptor

    def subscribe(self, callback, try_to_connect=False):
        self._channel.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback):
        self._channel.unsubscribe(callback)

    def _get_registered_call_handle(self, method):  # grpcio's, see Channel
        return method

    def unary_unary(self, method, request_serializer=None, response_deserializer=None,
                    _registered_method=False):
        def thunk(m):
            return self._channel.unary_unary(m, request_serializer, response_deserializer,
                                             _registered_method)

        if isinstance(self._interceptor, _api.UnaryUnaryClientInterceptor):
            return _InterceptedUnaryUnaryMultiCallable(thunk, method, self._interceptor)
        return thunk(method)

    def unary_stream(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        def thunk(m):
            return self._channel.unary_stream(m, request_serializer, response_deserializer,
                                              _registered_method)

        if isinstance(self._interceptor, _api.UnaryStreamClientInterceptor):
            return _InterceptedUnaryStreamMultiCallable(thunk, method, self._interceptor)
        return thunk(method)

    def stream_unary(self, method, request_serializer=None, response_deserializer=None,
                     _registered_method=False):
        def thunk(m):
            return self._channel.stream_unary(m, request_serializer, response_deserializer,
                                              _registered_method)

        if isinstance(self._interceptor, _api.StreamUnaryClientInterceptor):
            return _InterceptedStreamUnaryMultiCallable(thunk, method, self._interceptor)
        return thunk(method)

    def stream_stream(self, method, request_serializer=None, response_deserializer=None,
                      _registered_method=False):
        def thunk(m):
            return self._channel.stream_stream(m, request_serializer, response_deserializer,
                                               _registered_method)

        if isinstance(self._interceptor, _api.StreamStreamClientInterceptor):
            return _InterceptedStreamStreamMultiCallable(thunk, method, self._interceptor)
        return thunk(method)

    def close(self):
        self._channel.close()

    def _close(self):  # grpcio has it; some code calls it
        self.close()


_INTERCEPTOR_TYPES = (
    _api.UnaryUnaryClientInterceptor,
    _api.UnaryStreamClientInterceptor,
    _api.StreamUnaryClientInterceptor,
    _api.StreamStreamClientInterceptor,
)


def intercept_channel(channel, *interceptors):
    """A channel whose RPCs pass through ``interceptors`` (first listed runs
    first)."""
    for interceptor in reversed(list(interceptors)):
        if not isinstance(interceptor, _INTERCEPTOR_TYPES):
            raise TypeError(
                "interceptor must be UnaryUnaryClientInterceptor or "
                "UnaryStreamClientInterceptor or StreamUnaryClientInterceptor or "
                "StreamStreamClientInterceptor"
            )
        channel = _InterceptedChannel(channel, interceptor)
    return channel


# grpcio's names in grpc._interceptor (install_as_grpc makes this module it).
_Channel = _InterceptedChannel
