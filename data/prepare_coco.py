#!/usr/bin/env python3
"""Download and unpack COCO 2014 train images (82,783 JPEGs) for ``styletrain fit --data.path``.

Usage (on a machine with internet; needs about 27 GB free: 13.5 GB zip + 13.5 GB images)::

    python data/prepare_coco.py --dest data/coco            # -> data/coco/train2014/*.jpg
    styletrain fit --style painting.jpg --data.path data/coco/train2014

The download resumes where it stopped (HTTP range requests on ``train2014.zip.part``), the finished file is
checked against the size and MD5 published with COCO 2014, and the images are extracted into a temporary folder
that is renamed into place only when complete, so an interrupted run never leaves a half-extracted dataset that
looks finished. Running the script again is cheap: finished steps are detected and skipped. Standard library
only, so it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

URL = "http://images.cocodataset.org/zips/train2014.zip"
SIZE = 13_510_573_713  # bytes, as served by images.cocodataset.org
MD5 = "0da8c0bd3d6becc4dcb32757491aca88"
N_IMAGES = 82_783
CHUNK = 1 << 20


def download(url: str, dest: Path, expected_size: int | None, retries: int = 20) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with range requests; returns ``dest``."""
    if dest.exists() and (expected_size is None or dest.stat().st_size == expected_size):
        print(f"already downloaded: {dest}")
        return dest
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have == expected_size:
            break
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                if have and response.status != 206:  # the server ignored the range: start over
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else expected_size
                with open(part, "ab" if have else "wb") as f:
                    _copy(response, f, have, total)
            # urllib does not notice a connection dropped mid-body: compare with the announced length.
            if total is not None and part.stat().st_size < total:
                raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes")
            if expected_size is None or part.stat().st_size == expected_size:
                break
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            wait = min(60, 2**attempt)
            print(f"\ndownload interrupted ({exc}); retry {attempt}/{retries} in {wait}s", file=sys.stderr)
            time.sleep(wait)
    else:
        raise SystemExit(f"error: could not download {url} after {retries} attempts; run again to resume")
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        raise SystemExit(f"error: {part} has {size} bytes, expected {expected_size}; delete it and run again")
    part.rename(dest)
    return dest


def _copy(response, f, done: int, total: int | None) -> None:
    last = 0.0
    while chunk := response.read(CHUNK):
        f.write(chunk)
        done += len(chunk)
        if time.monotonic() - last > 1.0 or (total and done >= total):
            last = time.monotonic()
            pct = f" {100 * done / total:5.1f}%" if total else ""
            print(f"\r  {done / 1e9:6.2f} GB{pct}", end="", flush=True)
    print()


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(8 * CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive: Path, dest_dir: Path, limit: int | None = None) -> Path:
    """Unpack the JPEGs of ``archive`` into ``dest_dir/train2014`` (via a temporary folder); returns that folder."""
    final = dest_dir / "train2014"
    if final.is_dir():
        print(f"already extracted: {final}")
        return final
    tmp = dest_dir / "train2014.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if m.filename.lower().endswith(".jpg")][:limit]
        for i, member in enumerate(members, 1):
            # Flatten: never trust paths inside an archive (no "../" escapes).
            with zf.open(member) as src, open(tmp / Path(member.filename).name, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if i % 2000 == 0 or i == len(members):
                print(f"\r  extracted {i}/{len(members)}", end="", flush=True)
    print()
    tmp.rename(final)
    return final


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("data/coco"), help="target folder (default: data/coco)")
    parser.add_argument("--url", default=URL, help="archive URL (default: the official COCO server)")
    parser.add_argument("--no-md5", action="store_true", help="skip the MD5 check (about a minute on 13.5 GB)")
    parser.add_argument("--keep-zip", action="store_true", help="keep train2014.zip after extraction")
    parser.add_argument("--limit", type=int, default=None, help="extract only the first N images (quick trials)")
    args = parser.parse_args(argv)

    official = args.url == URL
    args.dest.mkdir(parents=True, exist_ok=True)
    need = (0 if (args.dest / "train2014.zip").exists() else SIZE) + SIZE
    free = shutil.disk_usage(args.dest).free
    if official and not (args.dest / "train2014").is_dir() and free < need:
        raise SystemExit(f"error: {args.dest} has {free / 1e9:.1f} GB free; about {need / 1e9:.1f} GB are needed")
    archive = args.dest / "train2014.zip"
    if not (args.dest / "train2014").is_dir():
        print(f"downloading {args.url} -> {archive}")
        download(args.url, archive, SIZE if official else None)
        if official and not args.no_md5:
            print("checking MD5 ...")
            if (digest := md5_of(archive)) != MD5:
                raise SystemExit(f"error: {archive} has MD5 {digest}, expected {MD5}; delete it and run again")
    folder = extract(archive, args.dest, args.limit)
    count = sum(1 for _ in folder.glob("*.jpg"))
    if official and args.limit is None and count != N_IMAGES:
        print(f"warning: {folder} holds {count} images, expected {N_IMAGES}", file=sys.stderr)
    if archive.exists() and not args.keep_zip:
        archive.unlink()
    print(f"{count} images ready; train with: --data.path {folder.resolve()}")


if __name__ == "__main__":
    main()
