"""The verdict log without a page: sides, order, skip and undo, saving and continuing, refusals;
and the agreement statistics on hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assess.human.agreement import annotator_agreement, cohen_kappa, judge_agreement
from assess.human.pairs import Pair, Pairs, task_id
from assess.human.verdicts import (
    NameRefused,
    RequestError,
    VerdictLog,
    VerdictLogError,
    clean_name,
    contestant_on_a,
)
from core.files import leftover_temp_files


def make_pairs(n: int = 5, contestant: str = "mine") -> Pairs:
    pairs = [Pair(i, task_id(f"task {i}", ""), f"task {i}", "", "cat", f"{contestant} {i}", f"theirs {i}")
             for i in range(n)]
    return Pairs(pairs, "model-x", "model-y", "test pairs")


def test_sides_are_seeded_per_annotator_and_task() -> None:
    pairs = make_pairs(40).pairs
    ann = [contestant_on_a(42, "Ann", p) for p in pairs]
    assert ann == [contestant_on_a(42, "Ann", p) for p in pairs]  # the same every time
    assert 10 < sum(ann) < 30  # shuffled
    assert ann != [contestant_on_a(42, "Bob", p) for p in pairs] != [contestant_on_a(7, "Ann", p) for p in pairs]


def test_order_skip_undo_and_continuing_from_the_file(tmp_path: Path) -> None:
    pairs = make_pairs()
    path = tmp_path / "human_verdicts.jsonl"
    log = VerdictLog.open(path, pairs, 42)
    assert not path.exists()  # nothing written before the first verdict
    ids = [p.task_id for p in pairs.pairs]
    assert log.next_pair("Ann").index == 0
    event = log.give("Ann", ids[0], "A")
    a_is_mine = contestant_on_a(42, "Ann", pairs.pairs[0])
    assert event["outcome"] == ("win" if a_is_mine else "loss") and event["contestant_side"] == "AB"[not a_is_mine]
    assert log.shown("Ann", pairs.pairs[0]) == (("mine 0", "theirs 0") if a_is_mine else ("theirs 0", "mine 0"))
    log.skip("Ann", ids[1])
    assert log.next_pair("Ann").index == 2
    log.give("Ann", ids[2], "tie")
    log.give("Ann", ids[3], "both_bad")
    assert log.undo("Ann").index == 3 and log.next_pair("Ann").index == 3  # the undone task comes back
    assert log.undo("Ann").index == 2 and log.next_pair("Ann").index == 2  # and the one before it
    log.give("Ann", ids[2], "B")
    assert log.progress("Ann") == (2, 5) and log.progress("Bob") == (0, 5)
    assert log.next_pair("Ann").index == 3  # then 4, and the skipped 1 last
    # Every event is in the file, complete, with no temporary file left behind.
    assert not leftover_temp_files(tmp_path, path.name)
    again = VerdictLog.open(path, pairs, 42)
    assert again.in_force() == log.in_force() and again.next_pair("Ann").index == 3
    again.give("Ann", ids[3], "A")
    again.give("Ann", ids[4], "A")
    assert again.next_pair("Ann").index == 1
    again.give("Ann", ids[1], "B")
    assert again.next_pair("Ann") is None and again.undo("Bob") is None
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["settings"] == {"pairs_sha256": pairs.digest, "seed": 42}
    assert [json.loads(line)["type"] for line in lines[1:]] == [
        "verdict", "skip", "verdict", "verdict", "undo", "undo", "verdict", "verdict", "verdict", "verdict"]


def test_refusals_are_one_line(tmp_path: Path) -> None:
    pairs = make_pairs()
    path = tmp_path / "human_verdicts.jsonl"
    log = VerdictLog.open(path, pairs, 42)
    with pytest.raises(RequestError, match="no task 'nope'"):
        log.give("Ann", "nope", "A")
    with pytest.raises(RequestError, match="the choice must be one of A, B, tie, both_bad"):
        log.give("Ann", pairs.pairs[0].task_id, "C")
    for bad, why in (("  ", "type your name"), ("x" * 41, "at most 40"), ("a\x07b", "control")):
        with pytest.raises(NameRefused, match=why):
            clean_name(bad)
    assert clean_name("  Zoë   Müller ") == "Zoë Müller" and clean_name("王 芳") == "王 芳"
    log.give("Ann", pairs.pairs[0].task_id, "A")
    with pytest.raises(VerdictLogError, match="given on other answers than these"):
        VerdictLog.open(path, make_pairs(contestant="other"), 42)
    with pytest.raises(VerdictLogError, match="given with --seed 42, not 7; pass --seed 42"):
        VerdictLog.open(path, pairs, 7)
    path.write_text(path.read_text() + '{"type": "verdict", "annotator": "Ann", "task": "zzz"}\n')
    with pytest.raises(VerdictLogError, match=r"human_verdicts.jsonl:3: names no annotator or a task"):
        VerdictLog.open(path, pairs, 42)


def test_agreement_by_hand() -> None:
    assert cohen_kappa(["win", "win"], ["win", "win"]) is None  # chance agreement is certain
    assert cohen_kappa(["win", "loss"], ["win", "loss"]) == 1.0
    assert cohen_kappa(["win", "loss"], ["loss", "win"]) == -1.0
    outcomes = {"Ann": {"t1": "win", "t2": "loss", "t3": "both_bad"}, "Bob": {"t1": "win", "t2": "win", "t3": "tie"},
                "Cy": {"t3": "loss", "t9": "win"}}
    result = annotator_agreement(outcomes)
    assert result["tasks_with_several_annotators"] == 3
    pairs = {tuple(p["annotators"]): p for p in result["pairs"]}
    assert set(pairs) == {("Ann", "Bob"), ("Ann", "Cy"), ("Bob", "Cy")}
    assert (pairs[("Ann", "Bob")]["agreement"], pairs[("Ann", "Bob")]["agreement_without_ties"]) == (2 / 3, 1 / 2)
    assert pairs[("Ann", "Cy")]["agreement"] == 0.0 and pairs[("Ann", "Cy")]["decisive_tasks"] == 0
    overall = result["overall"]  # 3 + 1 + 1 pooled comparisons, 2 equal
    assert (overall["tasks"], overall["agreement"]) == (5, 2 / 5)
    judged = judge_agreement(outcomes, {"t1": 1.0, "t2": 0.2, "t3": 0.5})
    # Ann: win=win, loss=loss, both_bad=tie; Bob: win=win, win!=loss, tie=tie; Cy: loss!=tie.
    assert judged["overall"]["tasks"] == 7 and judged["overall"]["agreement"] == 5 / 7
    assert judged["per_annotator"]["Ann"]["agreement"] == 1.0 and "Cy" in judged["per_annotator"]
