"""Training: the one loop every stage that trains shares, and how its epochs are scored.

engine (`fit`: devices, precision, steps, resume), streams (each process's batches, three
loaders), optim (optimizer and schedule), checkpoints (resumable state and the weights of the
epochs a validator prefers: snapshots), distributed and sync_batchnorm (data-parallel
training), validators (the per-epoch label-free scores), job (train and select: what the
pretrain and adapt stages run).

Imports: adaptflow.core, adaptflow.data, adaptflow.models, adaptflow.methods.
"""
