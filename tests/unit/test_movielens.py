"""The MovieLens adapter maps every layout onto the canonical tables."""

from __future__ import annotations

import pandas as pd
import pytest

from recomart.sources.movielens import (
    MovieLensFormatError,
    detect_layout,
    load_movielens,
    write_movielens_sources,
)
from recomart.tables import DATASETS


def _write_100k(folder):
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\n")
    flags = ["0"] * 19
    action = flags.copy()
    action[1] = "1"
    comedy_drama = flags.copy()
    comedy_drama[5] = comedy_drama[8] = "1"
    (folder / "u.item").write_text(
        "10|Heat (1995)|01-Jan-1995||http://x|" + "|".join(action) + "\n"
        "20|Caf\xe9 Society (1996)|01-Jan-1996||http://y|" + "|".join(comedy_drama) + "\n",
        encoding="latin-1")
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")


def test_classic_100k_layout(tmp_path):
    _write_100k(tmp_path / "ml")
    assert detect_layout(tmp_path / "ml") == "100k"
    frames = load_movielens(tmp_path / "ml")
    for name, frame in frames.items():
        assert list(frame.columns) == list(DATASETS[name].columns), name
    products = frames["products"].set_index("product_id")
    assert products.loc[10, "category"] == "Action"
    assert products.loc[20, "subcategory"] == "Comedy|Drama"
    assert products.loc[20, "title"] == "Café Society (1996)"
    users = frames["users"].set_index("user_id")
    assert users.loc[2, "gender"] == "F" and users.loc[2, "age"] == 53
    ratings = frames["ratings"]
    assert len(ratings) == 3 and str(ratings["timestamp"].dt.tz) == "UTC"
    assert frames["orders"].empty and frames["clickstream"].empty


def test_unknown_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MovieLensFormatError, match="not a MovieLens folder"):
        detect_layout(tmp_path)


@pytest.mark.movielens
def test_ml_latest_small(movielens_dir, tmp_path):
    frames = load_movielens(movielens_dir)
    assert len(frames["ratings"]) == 100_836
    assert frames["ratings"]["user_id"].nunique() == 610
    assert len(frames["products"]) == 9_742
    assert set(frames["ratings"]["product_id"]) <= set(frames["products"]["product_id"])
    assert frames["ratings"]["rating"].between(0.5, 5).all()
    toy_story = frames["products"].set_index("product_id").loc[1]
    assert toy_story["category"] == "Adventure" and "pixar" in toy_story["description"]

    counts = write_movielens_sources(movielens_dir, tmp_path / "src")
    assert counts["ratings"] == 100_836 and counts["orders"] == 0
    back = pd.read_csv(tmp_path / "src" / "ratings.csv")
    assert list(back.columns) == list(DATASETS["ratings"].columns)
    assert back["timestamp"].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").all()


def test_cli_converts_a_movielens_folder(tmp_path):
    from typer.testing import CliRunner

    from recomart.cli import app

    _write_100k(tmp_path / "ml")
    result = CliRunner().invoke(app, ["movielens", str(tmp_path / "ml"), "--out", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "src" / "ratings.csv")) == 3
    bad = CliRunner().invoke(app, ["movielens", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "not a MovieLens folder" in " ".join(bad.output.split())
