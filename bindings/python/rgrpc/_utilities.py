"""What grpcio-tools generated modules import from ``grpc._utilities``."""


def first_version_is_lower(version, other):
    """Generated ``*_pb2_grpc.py`` modules refuse to load when
    ``grpc.__version__`` is lower than the grpcio-tools version that made
    them. rgrpc has its own version numbers and implements the client API
    that generated code of any grpcio-tools version uses (channel.unary_unary
    etc. with ``_registered_method``), so under rgrpc the check always
    passes."""
    return False
