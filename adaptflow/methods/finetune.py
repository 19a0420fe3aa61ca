"""finetune: supervised training on the labeled data at hand (source, plus target if labeled).

With `adapt.layers.trainable_blocks: 0` this is feature extraction (only the bottleneck and
head train); with N it unfreezes the last N backbone blocks, and `backbone_lr_mult` /
`layer_lr_decay` give deeper blocks smaller learning rates. It is also how `pretrain` trains
the source model. On its own it does not look at unlabeled target images; with
`adapt.target_labeled_per_class: k` it is the classic few-shot transfer recipe.
"""

from typing import Annotated

import torch.nn.functional as F
from pydantic import Field

from adaptflow.core.params import StrictModel
from adaptflow.data.batch import Batch
from adaptflow.methods.base import Method, StepOutput, register


class FinetuneOptions(StrictModel):
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1


@register
class Finetune(Method):
    name = "finetune"
    Options = FinetuneOptions

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        if source is None:
            return StepOutput({})
        logits = self.model(source.images)
        loss = F.cross_entropy(logits, source.labels, label_smoothing=self.options.label_smoothing)
        accuracy = (logits.argmax(1) == source.labels).float().mean()
        return StepOutput({"source_ce": loss}, {"source_accuracy": accuracy.detach()})
