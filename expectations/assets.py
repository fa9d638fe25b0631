"""Offline copies of the web assets GX Data Docs load from CDNs (docs/architecture.md, 6).

Each asset comes from the npm registry package that the CDN URL serves, pinned to the same
version, fetched once by the project's setup (``python -m expectations.assets``, which runs
``npm pack``) into ``expectations/static/vendor/``. Data Docs pages link to copies inside the
built site, so a report renders with no network. Without the vendor folder the site still has no
external links: pages fall back to a small local stylesheet and lose only their scripts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).parent / "static" / "vendor"


@dataclass(frozen=True)
class Asset:
    """One CDN URL of the GX templates and the file of an npm package that replaces it."""

    url_prefix: str  # the CDN URL as the templates write it (query strings aside)
    package: str  # npm package@version
    member: str  # path inside the package tarball (under package/)
    extra: tuple[str, ...] = ()  # folders the file needs beside it (fonts of a stylesheet)

    @property
    def local(self) -> str:
        """Path of the copy, relative to the vendor folder."""
        return f"{self.package.lstrip('@').replace('/', '-')}/{self.member}"


ASSETS: tuple[Asset, ...] = (
    Asset("https://code.jquery.com/jquery-3.7.1.min.js", "jquery@3.7.1", "dist/jquery.min.js"),
    Asset("https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css",
          "bootstrap@4.3.1", "dist/css/bootstrap.min.css"),
    Asset("https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js",
          "bootstrap@4.3.1", "dist/js/bootstrap.min.js"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js",
          "popper.js@1.12.9", "dist/umd/popper.min.js"),
    Asset("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css",
          "bootstrap-table@1.19.1", "dist/bootstrap-table.min.css"),
    Asset("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js",
          "bootstrap-table@1.19.1", "dist/bootstrap-table.min.js"),
    Asset("https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
          "bootstrap-table-filter-control", "bootstrap-table@1.19.1",
          "dist/extensions/filter-control/bootstrap-table-filter-control.min.css"),
    Asset("https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
          "bootstrap-table-filter-control.min.js", "bootstrap-table@1.19.1",
          "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
          "bootstrap-datepicker.min.css", "bootstrap-datepicker@1.9.0",
          "dist/css/bootstrap-datepicker.min.css"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
          "bootstrap-datepicker.min.js", "bootstrap-datepicker@1.9.0",
          "dist/js/bootstrap-datepicker.min.js"),
    Asset("https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
          "bootstrap-prefers-dark.css", "@forevolve/bootstrap-dark@1.1.0",
          "dist/css/bootstrap-prefers-dark.css"),
    Asset("https://cdn.jsdelivr.net/npm/vega@5", "vega@5.33.1", "build/vega.min.js"),
    Asset("https://cdn.jsdelivr.net/npm/vega-lite@5", "vega-lite@5.23.0",
          "build/vega-lite.min.js"),
    Asset("https://cdn.jsdelivr.net/npm/vega-embed@6", "vega-embed@6.29.0",
          "build/vega-embed.min.js"),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css",
          "@fortawesome/fontawesome-free@6.6.0", "css/all.min.css", extra=("webfonts",)),
)


def installed(vendor: Path = VENDOR) -> bool:
    """Whether every asset is in the vendor folder."""
    return all((vendor / a.local).is_file() for a in ASSETS)


def install(vendor: Path = VENDOR, tarballs: Path | None = None) -> list[Path]:
    """Copy every asset into ``vendor`` from npm package tarballs (``npm pack`` when absent).

    Args:
        vendor: destination folder.
        tarballs: a folder holding the ``npm pack`` tarballs already; fetched when None.

    Returns:
        The files written.
    """
    written = []
    with tempfile.TemporaryDirectory(prefix="fusionlake-assets-") as tmp:
        folder = Path(tarballs) if tarballs else Path(tmp)
        packages = sorted({a.package for a in ASSETS})
        if tarballs is None:
            subprocess.run(["npm", "pack", "--silent", *packages], cwd=folder, check=True,
                           stdout=subprocess.DEVNULL)
        for asset in ASSETS:
            name, version = asset.package.rsplit("@", 1)
            tgz = folder / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
            with tarfile.open(tgz) as tar:
                members = [f"package/{asset.member}"] + [
                    m.name for m in tar.getmembers()
                    for d in asset.extra if m.isfile() and m.name.startswith(f"package/{d}/")]
                for member in members:
                    rel = member.removeprefix("package/")
                    dest = vendor / asset.local.removesuffix(asset.member) / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    if src is None:
                        raise FileNotFoundError(f"{tgz}: no file {member}")
                    with src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out)
                    written.append(dest)
    return written


if __name__ == "__main__":  # pragma: no cover - setup command
    files = install(tarballs=Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    sys.stdout.write(f"{len(files)} asset files in {VENDOR}\n")
