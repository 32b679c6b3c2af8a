"""Cards: what a published folder says about itself, in the Hugging Face card format.

- `front_matter`: a README.md with a YAML header (the part the Hub reads) and a Markdown body;
- `model_card`: the model card of a trained model, an adapter, a weight diff or a recovered
  model, rendered from facts the stages leave in files (`model_card.json` beside it), with the
  eval results added when an eval run of that model exists;
- `loss_curve`: the training loss curve (PNG) from `trainer_state.json`.

The dataset card is the generate stage's own (generate/dataset_card.py); it uses `front_matter`.
"""
