"""``grpc.compression`` aliases: ``Gzip``, ``Deflate``, ``NoCompression``."""

from ._api import Compression

NoCompression = Compression.NoCompression
Deflate = Compression.Deflate
Gzip = Compression.Gzip

__all__ = ("Compression", "NoCompression", "Deflate", "Gzip")
