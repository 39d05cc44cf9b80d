"""The s2mask error hierarchy.

Every problem a user can cause raises a subclass of :class:`S2MaskError`.  Each
subclass also inherits the builtin exception that fits it, so callers that catch
``FileNotFoundError`` or ``ValueError`` keep working.  Messages say what was found,
what was expected and how to fix it; the CLI prints them as one line.
"""

from __future__ import annotations

__all__ = [
    "S2MaskError",
    "ProductNotFoundError",
    "ProductFormatError",
    "CorruptDataError",
    "BandMismatchError",
    "WeightsError",
    "DeviceError",
    "OutputExistsError",
    "OutputError",
    "InvalidParameterError",
    "StacError",
    "RemoteReadError",
    "EmptySearchError",
    "NoValidDataError",
    "TrainingDataError",
]


class S2MaskError(Exception):
    """Base class of every error s2mask raises on purpose."""

    exit_code = 1
    """The CLI's exit code: 1 for problems with inputs or outputs, 2 for invalid parameters (usage)."""


class ProductNotFoundError(S2MaskError, FileNotFoundError):
    """A product, file or folder given by the user does not exist."""


class ProductFormatError(S2MaskError, ValueError):
    """A path exists but is not a product s2mask can read (not a .SAFE, wrong band count, no CRS...)."""


class CorruptDataError(S2MaskError, OSError):
    """A file of a product exists but cannot be decoded (truncated JP2, empty file, bad XML)."""


class BandMismatchError(S2MaskError, ValueError):
    """The bands of the data do not match the bands the model card asks for."""


class WeightsError(S2MaskError, ValueError):
    """Model weights or their card are missing, corrupt, unknown or inconsistent."""


class DeviceError(S2MaskError, RuntimeError):
    """The requested compute device is not available."""


class OutputExistsError(S2MaskError, FileExistsError):
    """The output path exists and ``overwrite`` was not given."""


class OutputError(S2MaskError, OSError):
    """The output cannot be written (folder not writable, disk full)."""


class InvalidParameterError(S2MaskError, ValueError):
    """A parameter value is out of range or malformed (bbox, dates, window size...)."""

    exit_code = 2  # a usage error: the command line asked for something impossible


class StacError(S2MaskError, ConnectionError):
    """A STAC API could not be reached or answered something that is not valid STAC."""


class RemoteReadError(S2MaskError, ConnectionError):
    """A raster over HTTP(S) or S3 could not be read, after retries (missing, refused, timed out)."""


class EmptySearchError(S2MaskError, LookupError):
    """A search (STAC or file pattern) matched nothing."""


class NoValidDataError(S2MaskError, ValueError):
    """The input holds no valid pixel at all (every pixel is nodata)."""


class TrainingDataError(S2MaskError, ValueError):
    """A training dataset is missing, empty after filtering, or malformed."""
