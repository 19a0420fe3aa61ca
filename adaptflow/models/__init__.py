"""Models: backbones, the classifier built on them, its checkpoints and its outputs.

backbones (torchvision `get_model` or a small CNN), pretrained (published weights from a local,
hash-checked file), classifier (input adapter, backbone, bottleneck, head; save and load),
blocks (per-block freezing and learning rates), outputs (logits and features over a pool).

Imports: adaptflow.core, adaptflow.data.
"""
