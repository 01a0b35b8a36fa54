"""The operations view's file: one replica's alone, and given back when it closes."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.admin.viewdb import ViewDatabase
from shared.errors import ConfigurationError


async def test_a_second_replica_on_the_same_file_is_refused_with_the_setting_to_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "view.sqlite3"
    async with ViewDatabase(path):
        with pytest.raises(ConfigurationError, match="HOOKLINE_ADMIN_VIEW_PATH"):
            async with ViewDatabase(path):
                pass
    # Closed: the file is free for the next process (a restart resumes from it).
    async with ViewDatabase(path):
        pass
