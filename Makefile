# Alpaca pipeline: generate -> train -> diff/recover. `make help` lists targets and variables.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# The test environment pins torch: an unpinned `torch` would pull a multi-GB CUDA build.
# On a GPU machine, set TORCH_SPEC to the build you want (e.g. TORCH_SPEC='torch>=2.6').
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= train,eval,test,human,gguf,ray

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
# ---- evolve / select (DATA below is their input too) ----
EVOLVED  ?= data/evolved.json
ROUNDS   ?= 2
SELECTED ?= data/selected.json
K        ?= 1000
SCORE    ?= rating
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
# ---- train, diff, recover: OVERWRITE=1 replaces a non-empty output folder ----
OVERWRITE ?=
# ---- export ----
FORMAT  ?= gguf
OUTTYPE ?= f16
# ---- all (a recipe) ----
RECIPE ?= recipes/alpaca-7b-fsdp.yaml
# ---- any stage ----
ARGS   ?=

STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: help setup generate report train train-lora diff recover chat eval human-eval evolve select export all smoke test test-slow test-gpu bench lint clean

help: ## List targets and variables
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (make <target> VAR=value):"
	@echo "  generate: OUTPUT_DIR=$(OUTPUT_DIR) NUM_INSTRUCTIONS=$(NUM_INSTRUCTIONS) MODEL=<model> SEED_TASKS=$(SEED_TASKS)"
	@echo "            PROMPT=<prompt file; default: by the seeds' language> BACKEND=$(BACKEND) (auto|openai|batch|local|ray) API=<completions|chat>"
	@echo "            LANGUAGE=<en|de|fr|es|pt|it|nl|ru|pl|zh|ja|ko|th|other; default: detected from the seeds>"
	@echo "  report:   OUTPUT_DIR=$(OUTPUT_DIR) (a generate run's folder)"
	@echo "  evolve:   DATA=$(DATA) EVOLVED=$(EVOLVED) ROUNDS=$(ROUNDS) MODEL=<model>"
	@echo "  select:   DATA=$(DATA) SELECTED=$(SELECTED) K=$(K) SCORE=$(SCORE) (rating|complexity|both)"
	@echo "  train:    MODEL=<hf path or id> DATA=$(DATA) OUTPUT_DIR=output/alpaca NPROC=$(NPROC) PORT=$(PORT) FSDP='$(FSDP)'"
	@echo "            OVERWRITE=1 replaces a non-empty OUTPUT_DIR (train, train-lora, diff: DIFF, recover: TUNED)"
	@echo "            several machines: NNODES=$(NNODES) NODE_RANK=$(NODE_RANK) MASTER_ADDR=$(MASTER_ADDR) (same PORT on every node)"
	@echo "  train-lora: as train, OUTPUT_DIR=output/alpaca-lora (NPROC=1 is one GPU); ARGS='--load_in_4bit True' for QLoRA, '--merge_lora True' for a merged model"
	@echo "  diff:     RAW=<base model> TUNED=<fine-tuned model> DIFF=<diff dir>"
	@echo "  recover:  RAW=<base model> DIFF=<diff dir> TUNED=<output dir>"
	@echo "  chat:     MODEL=<checkpoint dir> (ARGS='--prompt \"...\"' answers once)"
	@echo "  eval:     MODEL=<checkpoint dir> JUDGE=$(JUDGE) (none: answers only) EVAL_DIR=$(EVAL_DIR)"
	@echo "  human-eval: EVAL_DIR=$(EVAL_DIR) (the run whose pairs people compare) HUMAN_DIR=$(HUMAN_DIR)"
	@echo "  export:   MODEL=<checkpoint or adapter dir> FORMAT=$(FORMAT) (gguf|ollama) OUTTYPE=$(OUTTYPE) (f16|bf16|q8_0|f32)"
	@echo "  all:      RECIPE=$(RECIPE) (ARGS='--dry_run True' shows what would run and why)"
	@echo "  any:      ARGS='--flag value ...' passes further flags; TORCH_SPEC='$(TORCH_SPEC)'"
	@echo "Environment: OPENAI_API_KEY, OPENAI_BASE_URL (vLLM, llama.cpp, Ollama: http://host:port/v1)."

# Said on stderr: `answer=$$(make chat ARGS='--prompt ...')` captures the answer alone, first use included.
$(STAMP): pyproject.toml
	@echo "make: installing the pipeline and its dependencies into $(VENV) (extras $(EXTRAS); $(TORCH_SPEC))" >&2
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --upgrade pip >&2
	@$(PY) -m pip install --quiet "$(TORCH_SPEC)" >&2
	@# setuptools' note on every editable install of a flat layout ("Editable installation. Please
	@# be careful with folders...") is about its own mechanism, not this project: not shown.
	@PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e ".[$(EXTRAS)]" "$(TORCH_SPEC)" >&2
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

evolve: $(STAMP) ## Evolve DATA's instructions deeper and wider -> EVOLVED (failed rewrites eliminated, counted)
	$(PY) -m generate.evolve "$(DATA)" "$(EVOLVED)" --rounds $(ROUNDS) $(if $(MODEL),--model_name "$(MODEL)") $(ARGS)

select: $(STAMP) ## Choose the best K of DATA by SCORE, skipping near-duplicates -> SELECTED
	$(PY) -m generate.select "$(DATA)" "$(SELECTED)" --k $(K) --score $(SCORE) $(if $(MODEL),--model_name "$(MODEL)") $(ARGS)

train: OUTPUT_DIR = output/alpaca
train: $(STAMP) ## Fine-tune MODEL on DATA with FSDP over NPROC processes (x NNODES machines)
	@test -n "$(MODEL)" || { echo "make train: set MODEL=<path to a Hugging Face checkpoint>" >&2; exit 2; }
	$(PY) -m train.launch --nnodes=$(NNODES) --node_rank=$(NODE_RANK) --nproc_per_node=$(NPROC) \
	  --master_addr=$(MASTER_ADDR) --master_port=$(PORT) -m train \
	  --model_name_or_path "$(MODEL)" --data_path "$(DATA)" --output_dir "$(OUTPUT_DIR)" \
	  --bf16 True --num_train_epochs 3 --per_device_train_batch_size 4 --gradient_accumulation_steps 8 \
	  --save_strategy steps --save_steps 2000 --save_total_limit 1 --learning_rate 2e-5 \
	  --weight_decay 0. --warmup_steps 0.03 --lr_scheduler_type cosine --logging_steps 1 \
	  $(if $(strip $(FSDP)),--fsdp "$(FSDP)") --tf32 True $(ARGS)

# One GPU: LoRA r 16 (alpha 32) on every linear projection of the decoder layers, lr 3e-4, batch
# 4 x 32 = 128, gradient checkpointing (docs/train.md "One GPU"). QLoRA: ARGS='--load_in_4bit True'.
train-lora: OUTPUT_DIR = output/alpaca-lora
train-lora: $(STAMP) ## Fine-tune MODEL on DATA with LoRA on one GPU; the adapter -> OUTPUT_DIR
	@test -n "$(MODEL)" || { echo "make train-lora: set MODEL=<path to a Hugging Face checkpoint>" >&2; exit 2; }
	$(PY) -m train.launch --nproc_per_node=$(NPROC) --master_port=$(PORT) -m train \
	  --model_name_or_path "$(MODEL)" --data_path "$(DATA)" --output_dir "$(OUTPUT_DIR)" \
	  --lora_r 16 --lora_alpha 32 --lora_dropout 0.05 --lora_target_modules all-linear \
	  --bf16 True --num_train_epochs 3 --per_device_train_batch_size 4 --gradient_accumulation_steps 32 \
	  --gradient_checkpointing True --save_strategy steps --save_steps 200 --save_total_limit 1 \
	  --learning_rate 3e-4 --weight_decay 0. --warmup_steps 0.03 --lr_scheduler_type cosine \
	  --logging_steps 1 --tf32 True $(ARGS)

diff: $(STAMP) ## Write DIFF = TUNED - RAW, with an integrity manifest
	@test -n "$(RAW)" -a -n "$(TUNED)" -a -n "$(DIFF)" || { echo "make diff: set RAW=, TUNED= and DIFF=" >&2; exit 2; }
	$(PY) -m recover make_diff --path_raw "$(RAW)" --path_tuned "$(TUNED)" --path_diff "$(DIFF)" \
	  $(if $(wildcard $(EVAL_DIR)/eval_summary.json),--eval_dir "$(EVAL_DIR)") $(ARGS)

recover: $(STAMP) ## Rebuild TUNED = RAW + DIFF, checking every tensor
	@test -n "$(RAW)" -a -n "$(DIFF)" -a -n "$(TUNED)" || { echo "make recover: set RAW=, DIFF= and TUNED=" >&2; exit 2; }
	$(PY) -m recover recover --path_raw "$(RAW)" --path_diff "$(DIFF)" --path_tuned "$(TUNED)" $(ARGS)

chat: $(STAMP) ## Talk to a trained checkpoint (MODEL=...), answers streamed; ARGS='--prompt "..."' answers once
	@test -n "$(MODEL)" || { echo "make chat: set MODEL=<checkpoint directory>, e.g. MODEL=output/alpaca" >&2; exit 2; }
	@$(PY) -m assess.chat --model "$(MODEL)" $(ARGS)

eval: $(STAMP) ## Answer the eval set with MODEL, judge each answer against the reference with JUDGE
	@test -n "$(MODEL)" || { echo "make eval: set MODEL=<checkpoint directory>, e.g. MODEL=output/alpaca" >&2; exit 2; }
	$(PY) -m assess --model "$(MODEL)" --judge_model "$(JUDGE)" --output_dir "$(EVAL_DIR)" $(ARGS)

human-eval: $(STAMP) ## Blind pairwise comparison by people of EVAL_DIR's pairs, on a local page -> HUMAN_DIR
	$(PY) -m assess.human --eval_dir "$(EVAL_DIR)" --output_dir "$(HUMAN_DIR)" $(ARGS)

export: $(STAMP) ## Export MODEL to a GGUF file for llama.cpp (FORMAT=ollama: and a Modelfile) -> <MODEL>-gguf/
	@test -n "$(MODEL)" || { echo "make export: set MODEL=<checkpoint or LoRA adapter directory>, e.g. MODEL=output/alpaca" >&2; exit 2; }
	$(PY) -m export --model "$(MODEL)" --format $(FORMAT) --outtype $(OUTTYPE) $(ARGS)

all: $(STAMP) ## Run a recipe (RECIPE=recipes/<name>.yaml): generate, train, eval, diff, export; reruns only what changed
	$(PY) -m recipe "$(RECIPE)" $(ARGS)

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
	$(PY) -m compileall -q core generate train recover assess export recipe tests bench
	@if $(PY) -m ruff --version >/dev/null 2>&1; then $(PY) -m ruff check core generate train recover assess export recipe tests bench; else echo "ruff not installed: pip install ruff"; fi

# A misspelt variable (`make generate NUM_INSTRUCTION=5`) would be ignored without a word and the
# run would use the default: refuse it, naming the closest known variable.
KNOWN_VARIABLES := MODEL $(shell sed -n 's/^\([A-Z][A-Z0-9_]*\) *[?:]*=.*/\1/p' $(firstword $(MAKEFILE_LIST)))
UNKNOWN_VARIABLES := $(filter-out $(KNOWN_VARIABLES),$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
ifneq ($(UNKNOWN_VARIABLES),)
$(error $(shell $(PYTHON_SYS) -c 'import difflib, sys; known = sys.argv[2].split(); print("; ".join("unknown variable " + name + "".join(" (did you mean " + m + "?)" for m in difflib.get_close_matches(name, known, 1, 0.6)) for name in sys.argv[1].split()))' "$(UNKNOWN_VARIABLES)" "$(KNOWN_VARIABLES)"); make help lists them)
endif

# OVERWRITE=1 becomes --overwrite 1, after any ARGS='...' the user gave.
train train-lora diff recover: override ARGS += $(if $(OVERWRITE),--overwrite $(OVERWRITE))

# Errors in make's words: each target tells the commands which flags its variables set, and
# their one-line errors name the variable (SEED_TASKS) instead of the flag (--seed_tasks_path).
generate:         export ALPACA_MAKE_VARIABLES = output_dir=OUTPUT_DIR seed_tasks_path=SEED_TASKS prompt_path=PROMPT \
  language=LANGUAGE num_instructions_to_generate=NUM_INSTRUCTIONS backend=BACKEND model_name=MODEL api=API
report:           export ALPACA_MAKE_VARIABLES = folder=OUTPUT_DIR output_dir=OUTPUT_DIR
evolve:           export ALPACA_MAKE_VARIABLES = input=DATA output=EVOLVED IN=DATA OUT=EVOLVED rounds=ROUNDS \
  model_name=MODEL
select:           export ALPACA_MAKE_VARIABLES = input=DATA output=SELECTED IN=DATA OUT=SELECTED k=K score=SCORE \
  model_name=MODEL
train train-lora: export ALPACA_MAKE_VARIABLES = model_name_or_path=MODEL data_path=DATA output_dir=OUTPUT_DIR fsdp=FSDP \
  overwrite=OVERWRITE nproc_per_node=NPROC nnodes=NNODES master_port=PORT
diff:             export ALPACA_MAKE_VARIABLES = path_raw=RAW path_tuned=TUNED path_diff=DIFF overwrite=OVERWRITE
recover:          export ALPACA_MAKE_VARIABLES = path_raw=RAW path_diff=DIFF path_tuned=TUNED overwrite=OVERWRITE
chat:             export ALPACA_MAKE_VARIABLES = model=MODEL
eval:             export ALPACA_MAKE_VARIABLES = model=MODEL judge_model=JUDGE output_dir=EVAL_DIR
human-eval:       export ALPACA_MAKE_VARIABLES = eval_dir=EVAL_DIR output_dir=HUMAN_DIR
export:           export ALPACA_MAKE_VARIABLES = model=MODEL format=FORMAT outtype=OUTTYPE
all:              export ALPACA_MAKE_VARIABLES = recipe=RECIPE

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .hypothesis smoke
