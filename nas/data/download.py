"""Fetching and verifying dataset files: download when missing, checksum before use.

A file with an official URL is downloaded with ``urllib`` into a temporary file next to its
destination and renamed into place only when complete and its MD5 matches, so an interrupted
download never leaves a plausible-looking partial file behind. An existing file is verified
before it is read; any failure (offline, missing, truncated, wrong checksum) raises one
``DatasetFileError`` that names the file, where it is expected, its checksum and how to get it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nas.core.io import current_umask


class DatasetFileError(FileNotFoundError):
    """A dataset file is missing, could not be downloaded, or failed verification."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable, checksummed dataset file.

    Attributes:
        dataset: Human-readable dataset name for messages (``CIFAR-10``).
        filename: Name of the file under ``data.root``.
        url: Official download URL (``file://`` URLs work too, e.g. in tests).
        md5: Expected MD5 hex digest of the whole file.
    """

    dataset: str
    filename: str
    url: str
    md5: str

    def how_to_get(self, root: Path) -> str:
        """One sentence on where the file must be and how to obtain it."""
        return (
            f"Expected {self.dataset} at {root / self.filename} (md5 {self.md5}). Get it with "
            f"`wget {self.url} -P {root}` (or let data.download=true fetch it on a machine with "
            "internet access), then check `md5sum` matches; data.root selects the directory."
        )


def md5_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _download(remote: RemoteFile, dest: Path, timeout: float) -> None:
    """Downloads to a temporary file in ``dest``'s folder, then renames it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the data from others
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as r:
            shutil.copyfileobj(r, out, length=1 << 20)
        got = md5_file(tmp)
        if got != remote.md5:
            raise DatasetFileError(
                f"Downloaded {remote.url} but its md5 is {got}, not {remote.md5} (a truncated or "
                f"altered download); nothing was written. " + remote.how_to_get(dest.parent)
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as err:
        if isinstance(err, DatasetFileError):
            raise
        raise DatasetFileError(
            f"Could not download {remote.url} ({err}); the machine may be offline. "
            + remote.how_to_get(dest.parent)
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


def ensure_file(
    remote: RemoteFile, root: str | Path, download: bool = True, timeout: float = 60.0
) -> Path:
    """Returns the verified path of ``remote`` under ``root``, downloading it if allowed.

    Args:
        remote: The file's name, URL and checksum.
        root: Directory that holds (or will hold) the file.
        download: Fetch the file when it is missing.
        timeout: Socket timeout of the download in seconds.

    Returns:
        ``root / remote.filename``, whose MD5 matched.

    Raises:
        DatasetFileError: Missing (and not downloadable), download failed, or wrong checksum.
    """
    root = Path(root).expanduser()
    dest = root / remote.filename
    if not dest.is_file():
        if not download:
            raise DatasetFileError(
                f"{remote.dataset} file {dest} is missing and data.download=false. "
                + remote.how_to_get(root)
            )
        _download(remote, dest, timeout)
    got = md5_file(dest)
    if got != remote.md5:
        raise DatasetFileError(
            f"{remote.dataset} file {dest} has md5 {got} but {remote.md5} is expected: it is "
            "truncated, altered or a different version. Delete it and download again. "
            + remote.how_to_get(root)
        )
    return dest
