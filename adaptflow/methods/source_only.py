"""source_only: no adaptation; the source model goes through unchanged (the baseline)."""

from adaptflow.methods.base import Method, register


@register
class SourceOnly(Method):
    name = "source_only"

    def epochs(self, configured: int) -> int:
        return 0

    def trainable_groups(self) -> list[dict]:
        return []
