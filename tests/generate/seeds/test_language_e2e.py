"""Custom domains end to end through the loopback server: a Chinese domain, and an English law domain."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from generate.config import REFERENCE_BLACKLIST, REPO_ROOT, config_from_flags
from generate.run import generate
from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    ServerOptions,
    chat_reply,
    completion_reply,
)
from tests.generate.seed_files import write_seeds

# Seeds written for this test: a small Chinese everyday-advice domain.
CHINESE_SEEDS = [
    ("把下面这句话改写得更礼貌一些。", "明天之前把报告发给我。", "麻烦您在明天之前把报告发给我，谢谢！"),
    ("用三句话解释什么是复利。", "", "复利是指利息也会产生利息。本金和已得利息一起计算下一期利息。时间越长，增长越快。"),
    ("判断这条评论的情感是正面还是负面。", "这家店的服务太慢了，菜也凉了。", "负面"),
    ("为一家只卖手工面包的小店想三个店名。", "", "麦香小筑、老面坊、晨光烘焙"),
    ("从下面的句子中找出所有的人名。", "张伟和李娜周末去看望了王老师。", "张伟、李娜、王老师"),
    ("给准备第一次跑马拉松的人提四条建议。", "", "循序渐进增加跑量；提前适应装备；赛前减量；起跑别太快。"),
]

# The answering "model": instructions built from templates, subjects and aspects, so that some
# candidates are near-duplicates (same template and subject) and most are not.
_TEMPLATES = (
    "写一段关于{s}{a}的短文，不超过一百字。",
    "列出{s}在{a}方面常见的三个误区。",
    "用通俗的话向中学生解释{s}的{a}为什么重要。",
    "为一场讨论{s}{a}的讲座拟五个标题。",
    "比较两种改善{s}{a}的做法，并说明各自的利弊。",
    "给{s}提三条改进{a}的实用建议。",
    "针对{s}的{a}设计一份简短的调查问卷。",
    "总结{s}在{a}上最值得注意的要点。",
)
_SUBJECTS = ("老年人", "大学新生", "小型餐馆", "乡村学校", "远程团队", "城市骑行者", "自由职业者", "宠物主人",
             "初创公司", "夜班护士")
_ASPECTS = ("睡眠习惯", "饮食结构", "时间安排", "预算管理", "沟通方式", "安全隐患", "学习计划", "运动习惯",
            "压力来源", "周末活动")


def _chinese_block(number: int, rng: random.Random, examples: list[str], kind: str) -> str:
    instruction = rng.choice(_TEMPLATES).format(s=rng.choice(_SUBJECTS), a=rng.choice(_ASPECTS))
    inp = rng.choice(("<noinput>", "他每天晚上十二点以后才睡，早上七点起床。"))
    if kind == "blacklisted":
        instruction = "请描述这张图片里的人在做什么。"
    elif kind == "repeat" and examples:
        instruction = rng.choice(examples)
    elif kind == "malformed":
        return f"{number}. 指令：{instruction}\n{number}. 输出：\n好的。\n"
    elif kind == "markdown":
        return f"**{number}. 指令：** {instruction}\n**{number}. 输入：**\n{inp}\n**{number}. 输出：**\n这是回答。\n"
    elif kind == "halfwidth":
        return f"{number}. 指令: {instruction}\n{number}. 输入:\n{inp}\n{number}. 输出:\n这是回答。\n"
    return f"{number}. 指令：{instruction}\n{number}. 输入：\n{inp}\n{number}. 输出：\n这是一个认真的回答。\n"


def chinese_answer(prompt: str, restate: bool) -> str:
    """Five blocks in prompt_zh.txt's format, a function of the prompt alone; some for each filter."""
    numbers = re.findall(r"(\d+)\. 指令：", prompt)
    assert numbers, "the Chinese prompt's examples carry Chinese labels"
    first = int(numbers[-1])
    examples = re.findall(r"\d+\. 指令：(.+)", prompt)
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    kinds = ["plain", "markdown", "halfwidth", rng.choice(["blacklisted", "repeat", "malformed", "plain"]), "plain"]
    text = "###\n".join(_chinese_block(first + i, rng, examples, kind) for i, kind in enumerate(kinds))
    return text if restate else text[len(f"{first}. 指令："):]


class ChineseModel:
    """Routes added to the real loopback server: chat and completions answered in Chinese."""

    def __init__(self, server: OpenAIServer) -> None:
        self.answered = 0
        self.lock = threading.Lock()
        server.add_route("POST", "/v1/chat/completions", self.chat)
        server.add_route("POST", "/v1/completions", self.completions)

    def _count(self) -> None:
        with self.lock:
            self.answered += 1

    def chat(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        prompt = "\n".join(m["content"] for m in body["messages"])
        text = chinese_answer(prompt, restate=True)
        self._count()
        return chat_reply(body["model"], text, len(prompt), len(text))

    def completions(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        texts = [chinese_answer(p, restate=False) for p in prompts]
        self._count()
        return completion_reply(body["model"], texts, sum(map(len, prompts)), sum(map(len, texts)))


class CharTokenizer:
    """Character-level tokens for rouge_score: each CJK character, and ASCII words (independent of generate/)."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"[\u4e00-\u9fff]|[a-z0-9]+", text.lower())


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_chinese_domain_reaches_its_target_with_no_duplicate(api: str, tmp_path: Path, clean_env, caplog) -> None:
    seeds = write_seeds(tmp_path / "zh.jsonl", CHINESE_SEEDS, "zh")
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, logger="generate")
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        model = ChineseModel(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        clean_env.setenv("OPENAI_API_KEY", "sk-test")
        # No language flag at all: the run detects Chinese from the seeds and picks prompt_zh.txt.
        summary = generate(config_from_flags({
            "output_dir": str(out), "seed_tasks_path": str(seeds), "num_instructions_to_generate": 40,
            "api": api, "progress": False, "max_concurrency": 4, "seed": 3}))
    items = json.loads((out / "alpaca_data.json").read_text(encoding="utf-8"))
    assert summary["kept"] == 40 and len(items) == 40 and summary["finished"] is True
    assert model.answered >= 1
    assert "language: zh (Chinese), detected: Han script" in caplog.text
    assert str(REPO_ROOT / "prompt_zh.txt") in caplog.text
    # Every parse path was exercised and every trap was caught.
    rejected = summary["rejected"]
    # The picture bait ("这张图片") is caught by the quality filters' input_reference (they run
    # first) or else by the Chinese blacklist.
    assert rejected["similar"] > 0 and rejected["malformed"] > 0
    assert rejected["blacklisted"] + rejected["input_reference"] > 0
    assert rejected["too_short"] == 0 and rejected["non_ascii_start"] == 0 and rejected["punctuation_start"] == 0
    assert all(set(item) == {"instruction", "input", "output"} for item in items)
    assert not any("*" in item["instruction"] or "图片" in item["instruction"] for item in items)
    assert any(item["input"] == "" for item in items) and any(item["input"] for item in items)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=CharTokenizer())
    kept = [item["instruction"] for item in items]
    for a, b in itertools.combinations(kept, 2):
        assert scorer.score(a, b)["rougeL"].fmeasure <= 0.7, (a, b)
    for a in kept:
        for seed, _, _ in CHINESE_SEEDS:
            assert scorer.score(seed, a)["rougeL"].fmeasure <= 0.7, (a, seed)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_the_plain_loopback_server_follows_the_chinese_prompt(api: str, tmp_path: Path, clean_env) -> None:
    # README's offline try with a Chinese domain: the loopback server answers prompt_zh.txt's
    # `N. 指令：` blocks (its own English material), so the run parses them and reaches its target.
    seeds = write_seeds(tmp_path / "zh.jsonl", CHINESE_SEEDS, "zh")
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        summary = generate(config_from_flags({
            "output_dir": str(out), "seed_tasks_path": str(seeds), "num_instructions_to_generate": 12,
            "api": api, "progress": False, "max_concurrency": 4, "seed": 3}))
    assert (summary["kept"], summary["finished"], summary["rejected"]["malformed"]) == (12, True, 0)


LAW_SEEDS = [
    ("How do I file for bankruptcy in Texas?", "", "Chapter 7 or Chapter 13 petitions are filed with the federal bankruptcy court."),
    ("What is the difference between a will and a living trust?", "", "A will takes effect at death through probate; a trust avoids probate."),
    ("Explain what an easement is to a homeowner.", "", "An easement lets someone else use part of your land for a set purpose."),
    ("Summarize this clause in plain English.", "The Tenant shall not sublet the Premises without the Landlord's prior written consent.",
     "You need the landlord's written permission before subletting."),
    ("Can my landlord keep my security deposit for normal wear and tear?", "", "No. Deductions are for damage beyond normal wear."),
    ("Is a verbal agreement legally binding in California?", "", "Often yes, except for contracts that must be in writing."),
    ("What happens if I miss the deadline to file a small claims appeal?", "", "The judgment usually becomes final."),
    ("Should I file a police report after a minor car accident?", "", "Yes if anyone is hurt or damage exceeds the state threshold."),
]


def test_law_domain_seeds_rejected_by_the_blacklist_are_flagged(tmp_path: Path, clean_env, caplog) -> None:
    seeds = write_seeds(tmp_path / "law.jsonl", LAW_SEEDS, "law")
    proc = subprocess.run([sys.executable, "-m", "generate.check_seeds", str(seeds)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    without_file = ",".join(word for word in REFERENCE_BLACKLIST if word != "file")
    assert ("warning: blacklist word 'file' rejects 3 of your 8 seeds: ids law_0, law_6, law_7; change it with "
            f"--blacklist (without the words flagged here: --blacklist='{without_file}')") in proc.stdout.splitlines()
    assert "language: en (English), detected: Latin script, 100% of the seed instructions' letters" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "check_seeds: 0 errors, 2 warnings"  # and: only 8 seeds

    # The run flags the same thing before its first request, then follows the flag it names.
    caplog.set_level(logging.INFO, logger="generate")
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        clean_env.setenv("OPENAI_API_KEY", "sk-test")
        base = {"seed_tasks_path": str(seeds), "num_instructions_to_generate": 10, "progress": False,
                "max_concurrency": 2}
        generate(config_from_flags({**base, "output_dir": str(tmp_path / "a")}))
        assert "seed tasks: blacklist word 'file' rejects 3 of your 8 seeds" in caplog.text
        caplog.clear()
        summary = generate(config_from_flags({**base, "output_dir": str(tmp_path / "b"), "blacklist": without_file}))
    assert summary["kept"] == 10
    assert "blacklist word" not in caplog.text and "filters: all 8 seed instructions pass" in caplog.text
