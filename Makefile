# Alpaca pipeline: generate -> train -> diff/recover. `make help` lists targets and variables.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# The test environment pins torch: an unpinned `torch` would pull a multi-GB CUDA build.
# On a GPU machine, set TORCH_SPEC to the build you want (e.g. TORCH_SPEC='torch>=2.6').
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= train,eval,test,human,ray

# ---- generate ----
OUTPUT_DIR       ?= data
NUM_INSTRUCTIONS ?= 100
SEED_TASKS       ?= seed_tasks.jsonl
# Empty: the prompt follows the seed tasks' language (prompt.txt; prompt_zh.txt for Chinese;
# prompt_de.txt, prompt_fr.txt, ... prompt_pl.txt for de fr es pt it nl ru pl).
PROMPT           ?=
# Empty: detected from the seed tasks (python -m generate.check_seeds shows it); or en, de, fr, ...
LANGUAGE         ?=
BACKEND          ?= auto
API              ?=
# ---- train ----
DATA   ?= data/alpaca_data.json
NPROC  ?= 1
PORT   ?= 29500
FSDP   ?= full_shard auto_wrap
# Several machines: run `make train` on each with the same NNODES, MASTER_ADDR (node 0's
# address) and PORT, and NODE_RANK 0..NNODES-1 (torchrun's static rendezvous; docs/train.md).
NNODES      ?= 1
NODE_RANK   ?= 0
MASTER_ADDR ?= 127.0.0.1
# ---- diff / recover ----
RAW    ?=
TUNED  ?=
DIFF   ?=
# ---- chat / eval ----
JUDGE    ?= gpt-4.1
EVAL_DIR ?= output/eval
HUMAN_DIR ?= output/human-eval
# ---- any stage ----
ARGS   ?=

STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: help setup generate report train train-lora diff recover chat eval human-eval smoke test test-slow test-gpu bench lint clean

help: ## List targets and variables
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (make <target> VAR=value):"
	@echo "  generate: OUTPUT_DIR=$(OUTPUT_DIR) NUM_INSTRUCTIONS=$(NUM_INSTRUCTIONS) MODEL=<model> SEED_TASKS=$(SEED_TASKS)"
	@echo "            PROMPT=<prompt file; default: by the seeds' language> BACKEND=$(BACKEND) (auto|openai|batch|local|ray) API=<completions|chat>"
	@echo "            LANGUAGE=<en|de|fr|es|pt|it|nl|ru|pl|zh|ja|ko|th|other; default: detected from the seeds>"
	@echo "  report:   OUTPUT_DIR=$(OUTPUT_DIR) (a generate run's folder)"
	@echo "  train:    MODEL=<hf path or id> DATA=$(DATA) OUTPUT_DIR=<dir> NPROC=$(NPROC) PORT=$(PORT) FSDP='$(FSDP)'"
	@echo "            several machines: NNODES=$(NNODES) NODE_RANK=$(NODE_RANK) MASTER_ADDR=$(MASTER_ADDR) (same PORT on every node)"
	@echo "  train-lora: as train (NPROC=1 is one GPU); ARGS='--load_in_4bit True' for QLoRA, '--merge_lora True' for a merged model"
	@echo "  diff:     RAW=<base model> TUNED=<fine-tuned model> DIFF=<diff dir>"
	@echo "  recover:  RAW=<base model> DIFF=<diff dir> TUNED=<output dir>"
	@echo "  chat:     MODEL=<checkpoint dir> (ARGS='--prompt \"...\"' answers once)"
	@echo "  eval:     MODEL=<checkpoint dir> JUDGE=$(JUDGE) (none: answers only) EVAL_DIR=$(EVAL_DIR)"
	@echo "  human-eval: EVAL_DIR=$(EVAL_DIR) (the run whose pairs people compare) HUMAN_DIR=$(HUMAN_DIR)"
	@echo "  any:      ARGS='--flag value ...' passes further flags; TORCH_SPEC='$(TORCH_SPEC)'"
	@echo "Environment: OPENAI_API_KEY, OPENAI_BASE_URL (vLLM, llama.cpp, Ollama: http://host:port/v1)."

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]" "$(TORCH_SPEC)"
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP) ## Create .venv and install the pipeline with its train and test extras

generate: $(STAMP) ## Generate instruction data -> OUTPUT_DIR/alpaca_data.json
	$(PY) -m generate --output_dir "$(OUTPUT_DIR)" --seed_tasks_path "$(SEED_TASKS)" \
	  $(if $(PROMPT),--prompt_path "$(PROMPT)") $(if $(LANGUAGE),--language $(LANGUAGE)) \
	  --num_instructions_to_generate $(NUM_INSTRUCTIONS) \
	  --backend $(BACKEND) $(if $(MODEL),--model_name "$(MODEL)") $(if $(API),--api $(API)) $(ARGS)

report: $(STAMP) ## HTML report with plots of OUTPUT_DIR's data -> OUTPUT_DIR/generate_report.html
	$(PY) -m generate.report "$(OUTPUT_DIR)"

train: OUTPUT_DIR = output/alpaca
train: $(STAMP) ## Fine-tune MODEL on DATA with FSDP over NPROC processes (x NNODES machines)
	@test -n "$(MODEL)" || { echo "make train: set MODEL=<path to a Hugging Face checkpoint>" >&2; exit 2; }
	$(PY) -m torch.distributed.run --nnodes=$(NNODES) --node_rank=$(NODE_RANK) --nproc_per_node=$(NPROC) \
	  --master_addr=$(MASTER_ADDR) --master_port=$(PORT) -m train \
	  --model_name_or_path "$(MODEL)" --data_path "$(DATA)" --output_dir "$(OUTPUT_DIR)" \
	  --bf16 True --num_train_epochs 3 --per_device_train_batch_size 4 --gradient_accumulation_steps 8 \
	  --save_strategy steps --save_steps 2000 --save_total_limit 1 --learning_rate 2e-5 \
	  --weight_decay 0. --warmup_ratio 0.03 --lr_scheduler_type cosine --logging_steps 1 \
	  $(if $(strip $(FSDP)),--fsdp "$(FSDP)") --tf32 True $(ARGS)

# One GPU: LoRA r 16 (alpha 32) on every linear projection of the decoder layers, lr 3e-4, batch
# 4 x 32 = 128, gradient checkpointing (docs/train.md "One GPU"). QLoRA: ARGS='--load_in_4bit True'.
train-lora: OUTPUT_DIR = output/alpaca-lora
train-lora: $(STAMP) ## Fine-tune MODEL on DATA with LoRA on one GPU; the adapter -> OUTPUT_DIR
	@test -n "$(MODEL)" || { echo "make train-lora: set MODEL=<path to a Hugging Face checkpoint>" >&2; exit 2; }
	$(PY) -m torch.distributed.run --nproc_per_node=$(NPROC) --master_port=$(PORT) -m train \
	  --model_name_or_path "$(MODEL)" --data_path "$(DATA)" --output_dir "$(OUTPUT_DIR)" \
	  --lora_r 16 --lora_alpha 32 --lora_dropout 0.05 --lora_target_modules all-linear \
	  --bf16 True --num_train_epochs 3 --per_device_train_batch_size 4 --gradient_accumulation_steps 32 \
	  --gradient_checkpointing True --save_strategy steps --save_steps 200 --save_total_limit 1 \
	  --learning_rate 3e-4 --weight_decay 0. --warmup_ratio 0.03 --lr_scheduler_type cosine \
	  --logging_steps 1 --tf32 True $(ARGS)

diff: $(STAMP) ## Write DIFF = TUNED - RAW, with an integrity manifest
	@test -n "$(RAW)" -a -n "$(TUNED)" -a -n "$(DIFF)" || { echo "make diff: set RAW=, TUNED= and DIFF=" >&2; exit 2; }
	$(PY) -m recover make_diff --path_raw "$(RAW)" --path_tuned "$(TUNED)" --path_diff "$(DIFF)" $(ARGS)

recover: $(STAMP) ## Rebuild TUNED = RAW + DIFF, checking every tensor
	@test -n "$(RAW)" -a -n "$(DIFF)" -a -n "$(TUNED)" || { echo "make recover: set RAW=, DIFF= and TUNED=" >&2; exit 2; }
	$(PY) -m recover recover --path_raw "$(RAW)" --path_diff "$(DIFF)" --path_tuned "$(TUNED)" $(ARGS)

chat: $(STAMP) ## Talk to a trained checkpoint (MODEL=...), answers streamed; ARGS='--prompt "..."' answers once
	@test -n "$(MODEL)" || { echo "make chat: set MODEL=<checkpoint directory>, e.g. MODEL=output/alpaca" >&2; exit 2; }
	$(PY) -m assess.chat --model "$(MODEL)" $(ARGS)

eval: $(STAMP) ## Answer the eval set with MODEL, judge each answer against the reference with JUDGE
	@test -n "$(MODEL)" || { echo "make eval: set MODEL=<checkpoint directory>, e.g. MODEL=output/alpaca" >&2; exit 2; }
	$(PY) -m assess --model "$(MODEL)" --judge_model "$(JUDGE)" --output_dir "$(EVAL_DIR)" $(ARGS)

human-eval: $(STAMP) ## Blind pairwise comparison by people of EVAL_DIR's pairs, on a local page -> HUMAN_DIR
	$(PY) -m assess.human --eval_dir "$(EVAL_DIR)" --output_dir "$(HUMAN_DIR)" $(ARGS)

smoke: $(STAMP) ## Whole pipeline offline in minutes: loopback API, tiny model, 2-process FSDP, diff, recover
	OMP_NUM_THREADS=1 $(PY) -m tests.smoke_pipeline --workdir smoke

test: $(STAMP) ## Run the test suite (CPU; GPU tests skip without CUDA)
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP) ## Run the slow tests too
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-gpu: $(STAMP) ## Run only the GPU tests (on a machine with CUDA)
	$(PY) -m pytest -m gpu -q

bench: $(STAMP) ## Run the CPU benchmarks; results in bench/results/*.json
	OMP_NUM_THREADS=1 $(PY) bench/dedup.py
	OMP_NUM_THREADS=1 $(PY) bench/dedup_scale.py
	$(PY) bench/generate_throughput.py
	OMP_NUM_THREADS=1 $(PY) bench/recover.py
	$(PY) bench/language_id.py

lint: $(STAMP) ## Byte-compile everything and run ruff if installed
	$(PY) -m compileall -q core generate train recover assess tests bench
	@if $(PY) -m ruff --version >/dev/null 2>&1; then $(PY) -m ruff check core generate train recover assess tests bench; else echo "ruff not installed: pip install ruff"; fi

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .hypothesis smoke
