import pytest

from helpers.data.atomic import replace_folder, write_text_atomic


def test_replace_folder_swaps_in_only_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("last month")
    with pytest.raises(RuntimeError), replace_folder(target) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folder left behind
    assert (target / "old.txt").read_text() == "last month"
    with replace_folder(target) as tmp:
        (tmp / "new.txt").write_text("this month")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_text_atomic_leaves_no_temp_file(tmp_path):
    path = write_text_atomic(tmp_path / "a" / "x.json", "{}")
    assert path.read_text() == "{}"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]
