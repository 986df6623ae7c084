"""Transfer between datasets: ``finetune`` (linear probe / fine-tuning / last-N blocks,
few-shot subsets, scratch baseline) and ``cka`` (linear CKA between representations)."""
