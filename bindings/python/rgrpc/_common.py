"""``grpc._common`` as grpcio users import it (install_as_grpc): the
encode/decode helpers and the status-code tables by number."""

from __future__ import annotations

from . import _api


def encode(s):
    return s if isinstance(s, bytes) else s.encode("utf8")


def decode(b):
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return b


def serialize(message, serializer):
    return message if serializer is None else serializer(message)


def deserialize(serialized_message, deserializer):
    return serialized_message if deserializer is None else deserializer(serialized_message)


#: grpcio keys these by cygrpc's status numbers, which are the gRPC numbers.
CYGRPC_STATUS_CODE_TO_STATUS_CODE = _api.STATUS_CODES_BY_NUMBER
STATUS_CODE_TO_CYGRPC_STATUS_CODE = {c: n for n, c in _api.STATUS_CODES_BY_NUMBER.items()}
CYGRPC_CONNECTIVITY_STATE_TO_CHANNEL_CONNECTIVITY = _api.CONNECTIVITY_BY_NUMBER
