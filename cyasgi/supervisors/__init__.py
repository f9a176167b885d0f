"""Process supervisors: --workers (Multiprocess) and --reload (ChangeReload)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyasgi.supervisors.basereload import BaseReload
from cyasgi.supervisors.multiprocess import Multiprocess

if TYPE_CHECKING:
    ChangeReload: type[BaseReload]
else:
    try:
        from cyasgi.supervisors.watchfilesreload import WatchFilesReload as ChangeReload
    except ImportError:  # watchfiles missing (e.g. no wheel for this platform): poll instead
        from cyasgi.supervisors.statreload import StatReload as ChangeReload

__all__ = ["BaseReload", "ChangeReload", "Multiprocess"]
