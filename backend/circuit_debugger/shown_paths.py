"""Where a model or dictionary came from, as the API tells it.

Files that ship with the project (the embedded models under the package, the dictionaries in the
checkout) are named relative to the project, never by their install path: a public server would
otherwise tell every visitor where and as whom it is installed. Paths the operator gave on the
command line and hub names are shown as given (the operator chose them)."""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages' parent when installed)


def shown(source: str) -> str:
    try:
        return Path(source).resolve().relative_to(_ROOT).as_posix()
    except (ValueError, OSError):  # not under the project, or not a path (a hub name)
        return source
