"""Dataset versions in S3: publish once, read through a two-level verified cache."""

from workload.data.archive import ArchiveReader, open_archive
from workload.data.cache import DatasetCache, FetchReport
from workload.data.manifest import Manifest, ManifestError
from workload.data.publish import DatasetExistsError, publish

__all__ = [
    "ArchiveReader",
    "DatasetCache",
    "DatasetExistsError",
    "FetchReport",
    "Manifest",
    "ManifestError",
    "open_archive",
    "publish",
]
