"""The source model: where it starts, which start transfers best, and its training.

candidates (rank.candidates: torchvision weights or an earlier adaptflow model),
transferability (LogME, LEEP, NCE, H-score, proxy A-distance), ranking (the rank stage),
pretrain (the pretrain stage: a backbone trained on the labeled source domain).

Imports: adaptflow.core, data, models, methods, training.
"""
