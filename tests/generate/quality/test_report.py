"""The HTML report: built from a smoke-style run (generation writes it), with scores, for a Chinese run, in Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from generate.cli import main as generate_main
from generate.quality import rate
from generate.quality.report.build import build_report
from generate.quality.report.cli import main as report_main
from generate.quality.report.load import load_run
from generate.quality.report.plots import PLOTS
from generate.quality.report.stats import compute_stats
from generate.store import REPORT_NAME
from tests.fakes.openai_server import OpenAIServer, ServerOptions
from tests.fakes.rating_judge import Judge

REPO_ROOT = Path(__file__).resolve().parents[3]
_IMG = re.compile(r'<img id="plot-(\w+)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _plots(page: str) -> dict[str, tuple[int, int]]:
    return {name: _png_size(base64.b64decode(data)) for name, data in _IMG.findall(page)}


SMOKE_FLAGS = ["--backend", "openai", "--num_instructions_to_generate", "40", "--model_name", "gpt-4o-mini",
               "--progress", "False"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run as `make smoke` generates it (`python -m generate`'s entry point, the repo's seed tasks
    and prompt, the loopback server with filter bait (bad_block_rate 0.2), 40 instructions through
    the synchronous API); the entry point writes the report at the end."""
    out = tmp_path_factory.mktemp("smoke") / "data"
    mp = pytest.MonkeyPatch()
    try:
        for name in ("OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
            mp.delenv(name, raising=False)
        with OpenAIServer(ServerOptions(material="auto", bad_block_rate=0.2)) as server:
            mp.setenv("OPENAI_BASE_URL", server.base_url)
            assert generate_main([*SMOKE_FLAGS, "--output_dir", str(out)]) == 0
    finally:
        mp.undo()
    return out


def test_report_flag(smoke_run: Path, tmp_path: Path, clean_env) -> None:
    """A finished run, run again (nothing is requested): --report False writes no report, the default does."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    (run / REPORT_NAME).unlink()
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never called: the run is finished
    assert generate_main([*SMOKE_FLAGS, "--output_dir", str(run), "--report", "False"]) == 0
    assert not (run / REPORT_NAME).exists()
    assert generate_main([*SMOKE_FLAGS, "--output_dir", str(run)]) == 0
    assert _plots((run / REPORT_NAME).read_text(encoding="utf-8"))


def test_generation_writes_the_report_with_every_plot(smoke_run: Path) -> None:
    page = (smoke_run / REPORT_NAME).read_text(encoding="utf-8")
    plots = _plots(page)
    assert list(plots) == [name for name in PLOTS if name != "scores"]
    for name, (width, height) in plots.items():
        assert width >= 400 and height >= 200, name
        assert f'<h2 id="{name}">' in page
    summary = json.loads((smoke_run / "generate_summary.json").read_text())
    items = json.loads((smoke_run / "alpaca_data.json").read_text())
    assert len(items) == 40
    assert "<th>items kept</th><td>40 of 40 targeted</td>" in page
    assert f"<th>cost per kept item</th><td>${summary['estimated_cost_usd'] / 40:.6f}</td>" in page
    with_input = sum(1 for item in items if item["input"])
    assert f"<th>items with an input</th><td>{with_input} ({100 * with_input / 40:.1f}%)</td>" in page
    assert "<th>length unit</th><td>words</td>" in page
    # Every rejection the summary counts is what the rejections plot was drawn from.
    stats = compute_stats(load_run(smoke_run))
    assert stats.rejected == summary["rejected"] and sum(stats.rejected.values()) > 0
    assert len(stats.rouge_seed) + len(stats.rouge_kept) == 40
    assert 'src="http' not in page and "<script" not in page  # self-contained


def test_report_shows_scores_after_rating(smoke_run: Path, tmp_path: Path, clean_env, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    with OpenAIServer() as server:
        Judge().install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        rate.rate(rate.RateConfig(data=str(run / "alpaca_data.json"), min_score=4, progress=False))
    assert report_main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run / REPORT_NAME}"
    page = (run / REPORT_NAME).read_text(encoding="utf-8")
    assert list(_plots(page)) == list(PLOTS)
    scores = [json.loads(line)["score"] for line in (run / rate.SCORES_NAME).read_text().splitlines()]
    assert compute_stats(load_run(run)).scores == scores and len(scores) == 40
    kept = sum(1 for score in scores if score >= 4)
    assert f"{kept} of 40 items scored at least 4: {run / 'alpaca_data.min_score_4.json'}." in page


CHINESE = [
    ("写一首关于秋天的诗。", "", "秋风起，落叶黄，雁南飞。"),
    ("写一篇关于环保的短文。", "", "保护环境是每个人的责任。"),
    ("请解释什么是光合作用。", "", "光合作用是植物利用阳光制造养分的过程。"),
    ("列出五种常见的水果。", "", "苹果、香蕉、橙子、葡萄、西瓜。"),
    ("把下面的句子翻译成英文。", "我喜欢读书。", "I like reading."),
    ("给出三个保持健康的建议。", "", "多运动，多喝水，早睡早起。"),
    ("总结这段文字的主要内容。", "今天下雨了，我们没有去公园，在家看了一部电影。", "因为下雨，我们在家看电影。"),
    ("描述这张图片中的内容。", "", "一只猫。"),  # a defect the report must show
]


def test_chinese_run(tmp_path: Path) -> None:
    items = [{"instruction": i, "input": x, "output": o} for i, x, o in CHINESE]
    (tmp_path / "alpaca_data.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    neighbours = [{"instruction": item["instruction"], "nearest": CHINESE[k - 1][0] if k else "种子任务",
                   "rouge_l": 0.1 * k, "request": 0} for k, item in enumerate(items)]
    (tmp_path / "generate_neighbours.jsonl").write_text(
        "".join(json.dumps(n, ensure_ascii=False) + "\n" for n in neighbours), encoding="utf-8")
    stats = compute_stats(load_run(tmp_path))
    assert stats.unit == "characters"
    assert stats.lengths["instruction"] == [9, 10, 10, 9, 11, 11, 11, 10]
    assert stats.lengths["input"] == [0, 0, 0, 0, 5, 0, 20, 0]
    assert stats.with_input == 2
    assert [(verb, count) for verb, count, _ in stats.verbs][:2] == [("写", 2), ("解释", 1)]
    assert dict(stats.verbs[0][2]) == {"秋天": 1, "环保": 1}
    assert stats.rouge_seed == [0.0] and stats.rouge_kept == [0.1 * k for k in range(1, 8)]
    assert stats.defects == {"input_reference": 1}
    path = build_report(tmp_path)
    page = path.read_text(encoding="utf-8")
    assert "<th>length unit</th><td>characters</td>" in page
    assert "描述<mark>这张图片</mark>中的内容。" in page  # the defect's example, its evidence marked
    assert "<td>写</td><td>2</td><td>秋天 (1), 环保 (1)</td>" in page
    assert list(_plots(page)) == [name for name in PLOTS if name != "scores"]


def test_bad_folder_one_line(tmp_path: Path) -> None:
    (tmp_path / "alpaca_data.json").write_text('[{"instruction": "x", "input": 3, "output": "y"}]')
    proc = subprocess.run([sys.executable, "-m", "generate.report", str(tmp_path)], cwd=REPO_ROOT,
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"generate.report: error: {tmp_path / 'alpaca_data.json'}[0]: "
                                   f"field 'input' must be a string, got int")
    assert not (tmp_path / REPORT_NAME).exists()


def test_chromium_renders_every_plot(smoke_run: Path, tmp_path: Path, browser) -> None:
    """A real headless browser loads the page: every image decodes, and the screenshot is not blank."""
    browser.get((smoke_run / REPORT_NAME).as_uri())
    decoded = browser.execute_script(
        "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).map(i => i.id);")
    assert decoded == [f"plot-{name}" for name in PLOTS if name != "scores"]
    shot = tmp_path / "shot.png"
    browser.set_window_size(1200, 2400)
    assert browser.save_screenshot(str(shot))
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[1] >= 1000
    ink = (pixels[..., :3].mean(axis=2) < 0.9).mean()  # share of pixels that are not near white
    assert ink > 0.02
