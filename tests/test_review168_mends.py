"""Mends of reviewer-168's review: a file given as a model is refused without waiting, the
permissions of atomically written files and model folders follow the umask, and downscale's
check of an earlier output finds a time dim that only ``--dims`` names."""

from __future__ import annotations


def test_a_file_given_as_a_model_is_no_folder_without_a_pause(tmp_path, monkeypatch):
    from flexdownscale import hub

    def no_sleep(seconds):
        raise AssertionError(f"slept {seconds} s for a file")

    monkeypatch.setattr(hub.time, "sleep", no_sleep)
    model = tmp_path / "model.nc"
    model.write_bytes(b"not a folder")
    assert hub._is_folder(model) is False
    (tmp_path / "folder").mkdir()
    assert hub._is_folder(tmp_path / "folder") is True
    assert hub._is_folder(tmp_path / "missing") is False  # no save under way: no pause either


def test_a_missing_folder_being_saved_is_looked_at_again(tmp_path, monkeypatch):
    from flexdownscale import hub

    path = tmp_path / "model"
    (tmp_path / f"{hub._previous_prefix(path)}abc123").mkdir()  # a save is replacing it
    pauses = []

    def appears(seconds):
        pauses.append(seconds)
        path.mkdir(exist_ok=True)

    monkeypatch.setattr(hub.time, "sleep", appears)
    assert hub._is_folder(path) is True
    assert len(pauses) == 1
