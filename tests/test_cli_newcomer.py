"""What a new user tripped over in the CLI (issue 12), each against a real server: one test per item."""

from __future__ import annotations

import io
import json
import re

import pytest

from echosearch.client import Client
from echosearch.client.cli import build_parser, main
from echosearch.client.output import Progress
from echosearch.client.params import UsageError, parse_custom_task, parse_filter
from tests.fixtures.synthetic import make_video


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Two files of the same name in different folders, and a third."""
    root = tmp_path_factory.mktemp("tree")
    (root / "a").mkdir()
    (root / "b").mkdir()
    make_video(seed=31, path=root / "a" / "clip.avi")
    make_video(seed=32, path=root / "b" / "clip.avi")
    make_video(seed=33, frames=30, path=root / "c.avi")
    return root


def run(capsys, server, *argv: str) -> tuple[int, str, str]:
    rc = main(["--server", server.address, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def ingested(capsys, server, tree) -> dict[str, int]:
    """source name -> video id of the tree (ingested once per module; later calls find it stored)."""
    rc, out, err = run(capsys, server, "ingest", str(tree), "--json", "--meta", "site=east")
    assert rc == 0, err
    return {r["source"]: r["video_id"] for r in json_lines(out)}


# ---- 2. per-file metadata: --manifest ----------------------------------------------------


def test_ingest_manifest_gives_each_file_its_metadata(capsys, server, tmp_path):
    (tmp_path / "x").mkdir()
    make_video(seed=41, path=tmp_path / "x" / "one.avi")
    make_video(seed=42, path=tmp_path / "two.avi")
    (tmp_path / "m.csv").write_text(
        "path,study_id,patient_id,view,acquisition_time,site\n"
        "x/one.avi,ST1,P1,A4C,2024-01-02T03:04:05Z,north\n"
        "two.avi,ST2,P2,PLAX,,south\n"
    )
    rc, out, err = run(capsys, server, "ingest", "--manifest", str(tmp_path / "m.csv"), "--json")
    assert rc == 0, err
    rows = {r["source"]: r for r in json_lines(out)}
    assert set(rows) == {"x/one.avi", "two.avi"} and {r["status"] for r in rows.values()} == {"stored"}
    rc, out, _ = run(capsys, server, "videos", "--filter", "study_id=ST1", "--json")
    (one,) = json_lines(out)
    assert one["metadata"]["patient_id"] == "P1" and one["metadata"]["view"] == "A4C"
    assert one["metadata"]["tags"] == {"site": "north"} and one["source_name"] == "x/one.avi"
    rc, out, _ = run(capsys, server, "videos", "--filter", "tag.site=south", "--json")
    assert [v["metadata"]["study_id"] for v in json_lines(out)] == ["ST2"]


@pytest.mark.parametrize(
    "csv_text, with_folder, words",
    [
        ("path,view\nmissing.avi,A4C\n", False, ["row 2", "no such file", "missing.avi"]),
        ("path,acquisition_time\none.avi,last tuesday\n", False, ["row 2", "ISO 8601"]),
        ("path,view\none.avi,A4C\nghost.avi,A2C\n", True, ["row 3", "ghost.avi", "match no file"]),
        ("path,view\nghost.avi,A2C\n", True, ["not in the manifest", "one.avi"]),
        ("uri,view\ns3://bucket/one.avi,A4C\n", False, ["row 2", "URI"]),
    ],
)
def test_ingest_manifest_problems_name_the_row(capsys, server, tmp_path, csv_text, with_folder, words):
    make_video(seed=43, path=tmp_path / "one.avi")
    (tmp_path / "m.csv").write_text(csv_text)
    extra = [str(tmp_path)] if with_folder else []
    rc, out, err = run(capsys, server, "ingest", *extra, "--manifest", str(tmp_path / "m.csv"))
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err


# ---- 3. names keep their folders ----------------------------------------------------------


def test_source_name_is_the_path_below_the_ingest_root(capsys, server, tree):
    ids = ingested(capsys, server, tree)
    assert set(ids) == {"a/clip.avi", "b/clip.avi", "c.avi"}
    rc, out, _ = run(capsys, server, "videos", "--filter", "tag.site=east")
    assert rc == 0 and "a/clip.avi" in out and "b/clip.avi" in out


# ---- 4. tables a person can read -----------------------------------------------------------


def test_score_table_shows_names_and_only_the_columns_that_apply(capsys, server, tree):
    ingested(capsys, server, tree)
    rc, out, err = run(capsys, server, "score", "pacemaker", "--filter", "tag.site=east")
    header = out.splitlines()[0].split("  ")
    assert rc == 0 and "a/clip.avi" in out and "score > 0.298" in err
    assert [h.strip() for h in header if h.strip()] == [
        "id", "score", "among the selection", "decision (score > 0.298)", "source",
    ]  # fmt: skip
    rc, out, _ = run(capsys, server, "score", "ejection_fraction", "--filter", "tag.site=east")
    assert out.splitlines()[0].split() == ["id", "value", "source"]
    rc, out, _ = run(capsys, server, "score", "--prompt", "X", "--prompt", "Y", "--kind", "binary")
    assert out.splitlines()[0].split() == ["id", "score", "among", "the", "selection", "source"]


def test_tasks_show_description_kind_source_and_video_shows_fields(capsys, server, tree):
    ids = ingested(capsys, server, tree)
    rc, out, _ = run(capsys, server, "tasks")
    header = out.splitlines()[0].split()
    assert rc == 0 and header == ["name", "kind", "prompts", "answer", "source", "description"]
    pacemaker = next(line for line in out.splitlines() if line.startswith("pacemaker "))
    assert "binary" in pacemaker and "echosearch:echoclip" in pacemaker and "pacemaker: mean cosine" in pacemaker
    assert max(len(line) for line in out.splitlines()) < 400  # descriptions are truncated
    rc, out, _ = run(capsys, server, "video", str(ids["c.avi"]))
    assert "VideoMetadata(" not in out and re.search(r"^tags\s+site=east$", out, re.M)
    assert re.search(r"^view\s+-$", out, re.M) and re.search(r"^source_name\s+c.avi$", out, re.M)


# ---- 5. regression tasks can be ranked: --top / --bottom ---------------------------------------------


def test_score_bottom_and_top_of_a_regression_task(capsys, server, tree):
    ingested(capsys, server, tree)
    rc, out, _ = run(capsys, server, "score", "ejection_fraction", "--json")
    values = sorted(s["value"] for s in json_lines(out))
    rc, out, err = run(capsys, server, "score", "ejection_fraction", "--bottom", "2", "--json")
    assert rc == 0 and [s["value"] for s in json_lines(out)] == values[:2], err
    rc, out, _ = run(capsys, server, "score", "ejection_fraction", "--top", "2", "--json")
    assert [s["value"] for s in json_lines(out)] == values[::-1][:2]
    rc, out, err = run(capsys, server, "score", "ejection_fraction", "--top", "2", "--bottom", "2")
    assert rc == 2 and "not both" in err


# ---- 6. filters and -k fail loudly -----------------------------------------------------------


def test_misspelled_filter_key_is_refused_listing_the_known_keys(capsys, server):
    rc, out, err = run(capsys, server, "videos", "--filter", "veiw=A4C")
    assert rc == 2 and "unknown key 'veiw'" in err and "study_id" in err and "tag.veiw=A4C" in err
    flt = parse_filter(["tag.site=x", "view=A4C"])
    assert flt.tags == {"site": "x"} and flt.views == ("A4C",)
    with pytest.raises(UsageError, match="--where"):
        parse_filter(["site=x"], option="--where")  # the web UI names its own field


@pytest.mark.parametrize("command", [["search", "heart"], ["similar", "1"]])
def test_k_zero_is_an_error(capsys, server, command):
    with pytest.raises(SystemExit) as exc:
        main(["--server", server.address, *command, "-k", "0"])
    assert exc.value.code == 2 and "give 1 or more" in capsys.readouterr().err


# ---- 7. --name of a categorical custom task ------------------------------------------------------


def test_custom_categorical_task_keeps_its_name(capsys, server, tree):
    task = parse_custom_task("effusion", "categorical", ["A", "B"], None, [0, 2], ["0=none", "2=large"], None)
    assert task.name == "effusion" and task.labels == {0.0: "none", 2.0: "large"}
    ingested(capsys, server, tree)
    rc, out, err = run(capsys, server, "score", "--kind", "categorical", "--prompt", "NO EFFUSION.", "--prompt",
                       "LARGE EFFUSION.", "--value", "0", "--value", "2", "--label", "0=none", "--label", "2=large",
                       "--name", "effusion")  # fmt: skip
    assert rc == 0 and "task effusion (categorical)" in err


# ---- 8. delete and score --ids do what they can and report each id ----------------------------------


def test_delete_reports_each_id_whatever_the_order(capsys, server, tmp_path):
    make_video(seed=51, path=tmp_path / "gone.avi")
    rc, out, _ = run(capsys, server, "ingest", str(tmp_path / "gone.avi"), "--json")
    vid = json_lines(out)[0]["video_id"]
    rc, out, err = run(capsys, server, "delete", "999999", str(vid))
    assert rc == 1 and f"deleted {vid}" in out and "999999: not found" in err
    rc, out, _ = run(capsys, server, "video", str(vid))
    assert rc == 1


def test_score_ids_scores_the_known_and_lists_the_unknown(capsys, server, tree):
    ids = ingested(capsys, server, tree)
    rc, out, err = run(capsys, server, "score", "pacemaker", "--ids", "999998", str(ids["c.avi"]), "--json")
    assert rc == 1 and [s["video_id"] for s in json_lines(out)] == [ids["c.avi"]]
    assert "999998: not found" in err


# ---- 9. Ctrl-C during an ingest says what was stored ------------------------------------------------


def test_interrupted_ingest_lists_what_was_stored(capsys, server, tmp_path, monkeypatch):
    for n in range(3):
        make_video(seed=60 + n, path=tmp_path / f"v{n}.avi")
    real_ingest = Client.ingest

    def ingest(self, source, **kw):
        if str(source).endswith("v2.avi"):
            raise KeyboardInterrupt  # as if Ctrl-C arrived while this one was uploading
        return real_ingest(self, source, **kw)

    monkeypatch.setattr(Client, "ingest", ingest)
    rc, out, err = run(capsys, server, "ingest", str(tmp_path), "--jobs", "1")
    assert rc == 130 and "error: interrupted" in err
    assert "v0.avi" in out and "v1.avi" in out and out.count("stored") == 2
    assert "interrupted: 2 stored" in err


# ---- 10. export into a missing folder ---------------------------------------------------------------


def test_export_into_a_missing_folder_says_so(capsys, server, tmp_path):
    rc, out, err = run(capsys, server, "export", str(tmp_path / "nope" / "e.parquet"))
    assert rc == 1 and "folder" in err and "does not exist" in err and ".part-" not in err


# ---- 11. ingest progress: bytes, frames, ETA; errors above the bar -------------------------------------


def test_progress_counts_bytes_with_eta_and_prints_messages_above_the_bar():
    out = io.StringIO()
    bar = Progress(4 << 20, "ingest", out=out, enabled=True, unit="B")
    bar.start()
    assert "0 B/4.0 MiB" in out.getvalue()  # drawn before anything finished
    bar.update(1 << 20, "0/2 files, 0 frames")
    bar.message("error: bad.avi: INVALID_ARGUMENT: not a video")
    bar.update(2 << 20)
    text = out.getvalue()
    assert re.search(r"1\.0 MiB/4\.0 MiB [\d.]+ [KMG]iB/s ETA \d+:\d\d", text)
    # the error has a line of its own: the bar was wiped before it and redrawn after it
    assert re.search(r"\r +\rerror: bad.avi: INVALID_ARGUMENT: not a video\n\r", text)
    bar.update(4 << 20)
    bar.close()
    assert out.getvalue().endswith("\n") and "4.0 MiB/4.0 MiB" in out.getvalue() and " in 0:0" in out.getvalue()


def test_ingest_progress_shows_bytes_and_frames_while_streaming(capsys, server, tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOSEARCH_PROGRESS", "1")
    make_video(seed=71, path=tmp_path / "p.avi")
    (tmp_path / "bad.avi").write_bytes(b"garbage" * 50)
    rc, out, err = run(capsys, server, "ingest", str(tmp_path), "--jobs", "1")
    assert rc == 1 and "KiB/" in err and "frames" in err and "2/2 files" in err
    # the bar is wiped, the error gets its own whole line, the bar comes back below it
    assert re.search(r"\r +\rerror: \S*bad.avi: INVALID_ARGUMENT[^\r]*\n\ringest \[", err)


# ---- 12. score and export are not silent ---------------------------------------------------------


def test_score_and_export_show_progress_on_stderr_only(capsys, server, tree, tmp_path, monkeypatch):
    ingested(capsys, server, tree)
    monkeypatch.setenv("ECHOSEARCH_PROGRESS", "1")
    rc, out, err = run(capsys, server, "score", "ejection_fraction", "--json")
    assert rc == 0 and "encoding up to 202 prompts on first use (cached after)" in err and "score [" in err
    assert all(json.loads(line) for line in out.splitlines())  # stdout stays clean JSON
    rc, out, err = run(capsys, server, "export", str(tmp_path / "e.parquet"), "--json")
    assert rc == 0 and "export [" in err and json_lines(out)[0]["rows"] > 0
    rc, out, err = run(capsys, server, "score", "ejection_fraction", "--bottom", "1", "--json")
    assert rc == 0 and "ranking the selection" in err and "score [" not in err and len(json_lines(out)) == 1
    monkeypatch.setenv("ECHOSEARCH_PROGRESS", "0")
    rc, out, err = run(capsys, server, "score", "pacemaker", "--json")
    assert rc == 0 and "[" not in err


# ---- 18. --help: defaults, help on every option, an example per subcommand ----------------------------


def test_every_subcommand_help_has_examples_and_every_option_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "examples:" in text and f"echosearch {name}" in text, name
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
    serve = sub.choices["serve"].format_help()
    assert "random:echoclip" in serve and "default 127.0.0.1" in serve and "default 50051" in serve
    assert "default hf-hub:mkaichristensen/echo-clip" in serve
