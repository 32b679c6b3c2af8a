"""The blind comparison page in headless Chromium: clicks and keys record verdicts, the sides are
shuffled per task and never revealed to the page, a killed server loses nothing and the page
continues on reload, and two annotators' verdicts give the expected agreement and summary."""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path

import pytest

from assess.human.pairs import Pair
from assess.human.verdicts import contestant_on_a
from assess.stats import SCORE, describe
from tests.assess.human.runs import (
    CONTESTANT,
    N_TASKS,
    REFERENCE,
    judgments,
    page_server,
    stop,
    wait_for,
)

# Recorded by the page itself: every request it sends and every response it reads.
RECORD_FETCHES = """
window.__seen = [];
const realFetch = window.fetch;
window.fetch = async (url, options) => {
  const response = await realFetch(url, options);
  const text = await response.clone().text();
  window.__seen.push({url: String(url), sent: (options && options.body) || "", got: text});
  return response;
};
"""
SIDE_WORDS = ("contestant", "reference", CONTESTANT, REFERENCE, "text_davinci", "generator", "win", "loss")


def open_page(browser, url: str) -> None:
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_FETCHES})
    browser.get(url)


def text_of(browser, element_id: str) -> str:
    return browser.find_element("id", element_id).get_attribute("textContent")


def sign_in(browser, name: str) -> None:
    field = browser.find_element("id", "name-input")
    wait_for(field.is_displayed, what="the name form")
    field.clear()
    field.send_keys(name)
    browser.find_element("id", "start").click()
    wait_for(lambda: browser.find_element("id", "task-view").is_displayed()
             or browser.find_element("id", "done-view").is_displayed(), what="the first task")


def current_task(browser) -> int:
    """The task on screen (its number, from 1), once the page has settled."""
    wait_for(lambda: browser.execute_script("return !document.querySelector('#choose-a').disabled"))
    return int(text_of(browser, "category").split("task ")[1].rstrip(")"))


def act(browser, how: str) -> None:
    """A person's action: `click:<button id>` or `key:<key>`, then wait for the page to settle."""
    before = browser.execute_script("return window.__seen.length")
    kind, what = how.split(":")
    if kind == "click":
        browser.find_element("id", what).click()
    else:
        browser.find_element("tag name", "body").send_keys(what)
    wait_for(lambda: browser.execute_script("return window.__seen.length") > before, what=f"the answer to {how}")
    wait_for(lambda: browser.execute_script("return !document.querySelector('#undo').disabled"))


def side_of(browser, record: dict) -> str:
    """Which side (A or B) shows the contestant's answer on screen now."""
    a, b = text_of(browser, "answer-a"), text_of(browser, "answer-b")
    assert {a, b} == {record["contestant_answer"], record["reference_answer"]}
    return "A" if a == record["contestant_answer"] else "B"


def choice_for(outcome: str, side: str) -> str:
    """The button that gives the contestant `outcome` when its answer is on `side`."""
    if outcome in ("tie", "both_bad"):
        return {"tie": "click:choose-tie", "both_bad": "click:choose-bad"}[outcome]
    wins_with = "A" if outcome == "win" else "B"
    return "click:choose-a" if side == wins_with else "click:choose-b"


def verdict_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "human_verdicts.jsonl").read_text().splitlines()[1:]]


def in_force(out: Path) -> dict[str, dict[int, dict]]:
    """annotator -> task index -> verdict, replaying undo as the server does."""
    verdicts: dict[str, dict[int, dict]] = {}
    for event in verdict_lines(out):
        mine = verdicts.setdefault(event["annotator"], {})
        if event["type"] == "verdict":
            mine[event["index"]] = event
        elif event["type"] == "undo":
            del mine[event["index"]]
    return verdicts


def test_clicks_and_keys_record_verdicts_and_the_sides_stay_hidden(browser, eval_run: Path, tmp_path: Path) -> None:
    records = judgments(eval_run)
    out = tmp_path / "human"
    with page_server(eval_run, out) as (proc, url):
        open_page(browser, url)
        sign_in(browser, "Ann")
        assert current_task(browser) == 1 and text_of(browser, "progress") == f"0 of {N_TASKS} done"
        # Model output shows as text: markup and scripts in an answer do nothing.
        shown = text_of(browser, "answer-a") + text_of(browser, "answer-b")
        assert "<b>0</b>" in shown and "<script>" in shown
        assert browser.execute_script("return window.__hacked === undefined")
        sides = {}
        steps = [("click:choose-a", "A"), ("key:b", "B"), ("click:choose-tie", "tie"), ("key:x", "both_bad")]
        for number, (how, choice) in enumerate(steps, start=1):
            assert current_task(browser) == number
            sides[number] = side_of(browser, records[number - 1])
            act(browser, how)
        assert text_of(browser, "progress") == f"4 of {N_TASKS} done"
        assert current_task(browser) == 5
        act(browser, "key:s")  # skip task 5: task 6 comes first, 5 after the others
        assert current_task(browser) == 6
        act(browser, "key:u")  # undo: the verdict on task 4 is taken back and task 4 shown again
        assert current_task(browser) == 4 and "Took back your verdict on task 4" in text_of(browser, "status")
        assert text_of(browser, "progress") == f"3 of {N_TASKS} done"
        act(browser, "key:1")  # 1 is A too
        assert current_task(browser) == 6
        seen = browser.execute_script("return window.__seen")
        page = browser.page_source
        status, _, _ = stop(proc, signal.SIGINT)  # Ctrl-C
    assert status == 130

    verdicts = in_force(out)["Ann"]
    assert sorted(verdicts) == [0, 1, 2, 3]
    for index, choice in zip(range(4), ["A", "B", "tie", "A"]):
        side = sides[index + 1]
        expected = choice if choice == "tie" else ("win" if choice == side else "loss")
        assert (verdicts[index]["choice"], verdicts[index]["contestant_side"], verdicts[index]["outcome"]) == (
            choice, side, expected)
    # The page's sides are the server's seeded shuffle, and it does shuffle.
    on_a = [contestant_on_a(42, "Ann", Pair(i, v["task"], "", "", "", "", "")) for i, v in sorted(verdicts.items())]
    assert ["A" if a else "B" for a in on_a] == [sides[i + 1] for i in range(4)]
    assert len(set(sides.values())) == 2
    # Never revealed: not in the page, not in anything the page sent or received.
    assert seen and all(s["url"].startswith("/api/") for s in seen)
    for word in SIDE_WORDS:
        pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        assert not pattern.search(page), word
        for exchange in seen:
            assert not pattern.search(exchange["sent"] + exchange["got"]), (word, exchange)
    for exchange in seen:
        if exchange["got"].startswith("{"):
            got = json.loads(exchange["got"])
            assert set(got) == {"task", "done", "total", "note"}
            assert got["task"] is None or set(got["task"]) == {
                "id", "number", "category", "instruction", "input", "answer_a", "answer_b"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_killed_server_loses_nothing_and_the_page_continues(browser, eval_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "human"
    port = free_port()
    with page_server(eval_run, out, port) as (proc, url):
        open_page(browser, url)
        sign_in(browser, "Ann")
        for how in ("click:choose-a", "key:b", "click:choose-tie"):
            act(browser, how)
        proc.kill()  # no shutdown at all
        proc.wait()
        browser.find_element("id", "choose-a").click()
        wait_for(lambda: "cannot be reached" in text_of(browser, "status"), what="the page to notice")
    assert [e["index"] for e in verdict_lines(out)] == [0, 1, 2]
    with page_server(eval_run, out, port) as (proc, url2):
        assert url2 == url
        browser.refresh()  # the name is remembered by the browser; the server knows the rest
        wait_for(lambda: browser.find_element("id", "task-view").is_displayed(), what="the task after reload")
        assert current_task(browser) == 4 and text_of(browser, "progress") == f"3 of {N_TASKS} done"
        assert text_of(browser, "annotator") == "Ann"
        act(browser, "key:t")
        status, stdout, _ = stop(proc)
    assert status == 143
    assert [e["index"] for e in verdict_lines(out)] == [0, 1, 2, 3]
    summary = json.loads((out / "human_summary.json").read_text())
    assert summary["results"]["verdicts"] == 4 and "4 verdicts by 1 annotator on 4 of 8 tasks" in stdout


# Outcomes each annotator gives the contestant, task by task (from task 1).
ANN = ["win", "loss", "tie", "win", "both_bad", "loss"]
ZOE = ["win", "loss", "loss", "tie"]


def test_two_annotators_agreement_and_the_summary(browser, eval_run: Path, tmp_path: Path) -> None:
    records = judgments(eval_run)
    out = tmp_path / "human"
    with page_server(eval_run, out) as (proc, url):
        open_page(browser, url)
        for name, outcomes in (("Ann", ANN), ("Zoë", ZOE)):
            if name == "Zoë":
                browser.find_element("id", "change-name").click()
            sign_in(browser, name)
            for number, outcome in enumerate(outcomes, start=1):
                assert current_task(browser) == number
                act(browser, choice_for(outcome, side_of(browser, records[number - 1])))
        status, _, _ = stop(proc)
    assert status == 143
    summary = json.loads((out / "human_summary.json").read_text())
    # Zoë's sides are shuffled independently of Ann's, yet the outcomes are what both meant.
    assert {k: {i: v["outcome"] for i, v in m.items()} for k, m in in_force(out).items()} == {
        "Ann": dict(enumerate(ANN)), "Zoë": dict(enumerate(ZOE))}

    # Agreement on the 4 shared tasks: same outcome on tasks 1 and 2 (both_bad counts as a tie).
    overall = summary["agreement"]["overall"]
    assert summary["agreement"]["tasks_with_several_annotators"] == 4
    assert (overall["tasks"], overall["agreement"], overall["decisive_tasks"], overall["agreement_without_ties"]) == (
        4, 0.5, 2, 1.0)
    # Cohen's kappa by hand: p_o = 1/2; Ann (win, loss, tie, win), Zoë (win, loss, loss, tie):
    # p_e = 2/4*1/4 + 1/4*2/4 + 1/4*1/4 = 5/16; (1/2 - 5/16) / (1 - 5/16) = 3/11.
    assert overall["cohen_kappa"] == pytest.approx(3 / 11, abs=1e-12)
    assert summary["agreement"]["pairs"] == [{"annotators": ["Ann", "Zoë"], **overall}]

    # The results are the statistics module's on the same verdicts: a task's score is the mean
    # of its verdicts (both_bad as a tie).
    score = {**SCORE, "both_bad": 0.5}
    per_task = [(score[a] + score[b]) / 2 for a, b in zip(ANN, ZOE)] + [score[a] for a in ANN[4:]]
    expected = describe(per_task, 300, 42)
    assert {k: summary["results"][k] for k in expected} == expected
    assert summary["results"]["verdicts"] == 10 and summary["results"]["both_bad"] == 1
    assert summary["annotators"]["Ann"]["wins"] == 2 and summary["annotators"]["Zoë"]["losses"] == 2

    # The judge judged the same pairs: each person's verdict against the judge's outcome.
    judge = [r["outcome"] for r in records]
    people = [("Ann", o, judge[i]) for i, o in enumerate(ANN)] + [("Zoë", o, judge[i]) for i, o in enumerate(ZOE)]
    agree = sum(("tie" if o == "both_bad" else o) == j for _, o, j in people)
    judged = summary["judge_agreement"]["overall"]
    assert summary["judge"] == "judge-1" and judged["tasks"] == 10 and judged["agreement"] == agree / 10
    assert summary["judge_agreement"]["people_on_the_same_tasks"] == overall
    assert summary["judge_on_the_same_tasks"]["n"] == 6
