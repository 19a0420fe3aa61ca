"""reports/evaluate.md: the result in plain words, the warnings, source-only vs adapted side by
side, what each label-free validator (or rule) would have chosen, and per-class accuracy."""

from __future__ import annotations

from typing import Any

from adaptflow.evaluation.metrics import SOURCE_ONLY_PREFIX, chooser


def _model_row(label: str, metrics: dict[str, Any], prefix: str) -> str:
    figure = [
        metrics[prefix + name]
        for name in ("target_accuracy", "target_macro_f1", "target_ece", "source_test_accuracy")
    ]
    return f"| {label} | " + " | ".join(f"{value:.4f}" for value in figure) + " |"


def headline(metrics: dict[str, Any]) -> list[str]:
    """The result in plain words: accuracy, gain over source-only, and what it means."""
    accuracy, gain = metrics["target_accuracy"], metrics["adaptation_gain"]
    lines = [
        f"**Target accuracy {100 * accuracy:.1f}%** on {metrics['target_test_images']} target "
        f"test images; the source model without adaptation: "
        f"{100 * metrics['source_only_target_accuracy']:.1f}% ({100 * gain:+.1f} points)."
    ]
    if metrics["negative_transfer"]:
        lines.append(
            "**NEGATIVE TRANSFER**: the adapted model is worse than the source model on the target."
        )
    elif metrics["selection"]["fell_back_to_source"] or abs(gain) < 0.005:
        lines.append("Adaptation brought no measurable gain on the target.")
    if accuracy < 0.5:
        lines.append(
            f"**Adaptation failed to make the model usable here**: it is wrong on "
            f"{100 * (1 - accuracy):.0f}% of target test images."
        )
    else:
        lines.append(f"It is wrong on {100 * (1 - accuracy):.1f}% of target test images.")
    return lines


def warnings_block(warnings: list[str]) -> list[str]:
    """The adapt stage's label-free warnings, first thing in the report."""
    if not warnings:
        return ["Label-free warnings: none."]
    lines = [
        f"**{len(warnings)} label-free warning(s)** (found by adapt, without target labels):",
        "",
    ]
    return lines + [f"- {warning}" for warning in warnings]


def _budget_line(budget: dict[str, Any]) -> str:
    """What the portfolio cost, and which members each rung dropped (and so trained no more)."""
    one = budget["single_method_epochs"]
    spent = budget["member_epochs"]
    ratio = f"{spent / one:.1f}x" if one else "-"
    line = (
        f"Compute: {spent} member-epochs, {ratio} one method's {one} "
        f"(`adapt.portfolio.budget: {budget['budget']}`)."
    )
    drops = [
        f"after epoch {rung['epoch']} the rule dropped {', '.join(rung['dropped'])}"
        for rung in budget["rungs"]
        if rung["dropped"]
    ]
    return line + (f" Successive halving: {'; '.join(drops)}." if drops else "")


def _kept_line(selection: dict[str, Any]) -> str:
    oracle = "Target accuracy is shown here only to judge the choice (oracle)."
    labeled = selection.get("labeled_selection")
    if labeled:
        return (
            f"Kept: **{selection['chosen']}**, chosen with {labeled['labels']} labeled target "
            f"train images ({selection['rule']} alone would have kept "
            f"{labeled['label_free_pick']}). {oracle}"
        )
    rule = selection["rule"]
    return f"Kept: **{selection['chosen']}**, picked by {rule} without target labels. {oracle}"


def _finetune_sentence(tuned: dict[str, Any]) -> str:
    """The kept model fine-tuned on labels: how it did on those it did not train on."""
    base, name = tuned["from"], tuned["model"]
    right = tuned["held_out_right"]
    outcome = f"kept {name}" if tuned["kept"] else f"kept {base}"
    return (
        f" Fine-tuned on {tuned['trained_on']} of the labels ({tuned['method']}, "
        f"{tuned['epochs']} epoch{'s' if tuned['epochs'] != 1 else ''}), {name} got "
        f"{right[name]} of the {tuned['held_out']} others right, {base} {right[base]} (better "
        f"with probability {tuned['p_better']:.2f}, each image weighted by how it was drawn): "
        f"{outcome}."
    )


def labeled_sentence(record: dict[str, Any]) -> str:
    """The choice in words, for the reports."""
    tuned = record.get("finetune")
    kept, labels = (tuned["from"] if tuned else record["kept"]), record["labels"]
    accuracy = record["accuracy"]
    rule_pick = record["label_free_pick"]
    rule = f"the label-free rule would have kept {rule_pick}"
    if rule_pick == kept:
        rule = f"the label-free rule would also have kept {rule_pick}"
    for rung in record.get("rungs", []):
        if set(rung["labels_kept"]) != set(rung["rule_would_keep"]):  # the first divergence
            rule = (
                f"after epoch {rung['epoch']} the labels went on with "
                f"{', '.join(rung['labels_kept'])}, where the label-free rule would have gone "
                f"on with {', '.join(rung['rule_would_keep'])}"
            )
            break
    how = (
        "weighted by how `adaptflow label` chose the images"
        if accuracy["importance_weighted"]
        else "taking the labeled images as a random sample"
    )
    estimated = "Its target accuracy estimated from the labels"
    if tuned and tuned["kept"]:
        estimated = f"{record['kept']}'s target accuracy estimated from the held-out labels"
    return (
        f"Kept {kept}: best with probability {record['p_best'][kept]:.2f} after {labels} "
        f"target labels; {rule}.{_finetune_sentence(tuned) if tuned else ''} {estimated}: "
        f"{100 * accuracy['estimate']:.1f}% (95% interval {100 * accuracy['low']:.1f}-"
        f"{100 * accuracy['high']:.1f}%, {how})."
    )


def labels_block(selection: dict[str, Any]) -> list[str]:
    """The choice made with labeled target images, and whether its interval held."""
    labeled = selection.get("labeled_selection")
    if not labeled:
        return []
    held = "covers" if labeled["interval_covers_test_accuracy"] else "**misses**"
    return [
        "",
        f"{labeled_sentence(labeled)} The interval {held} the target test accuracy.",
    ]


def _portfolio_table(selection: dict[str, Any]) -> list[str]:
    """Auto runs: every model, which rules picked it, and its target accuracy (oracle)."""
    picked_by: dict[str, list[str]] = {}
    for rule, choice in selection["by_rule"].items():
        picked_by.setdefault(choice["member"], []).append(rule)
    lines = [
        "",
        "## Portfolio (adapt.method: auto)",
        "",
        _kept_line(selection),
        "",
        _budget_line(selection["budget"]),
        "",
        "| model | picked by | target accuracy (oracle) |",
        "|---|---|---:|",
    ]
    for name, accuracy in selection["models"].items():
        mark = " (kept)" if name == selection["chosen"] else ""
        rules = ", ".join(picked_by.get(name, [])) or "-"
        lines.append(f"| {name}{mark} | {rules} | {accuracy:.4f} |")
    return lines


def render_evaluation_report(metrics: dict[str, Any]) -> str:
    """Markdown: the headline and warnings, source-only vs adapted, each validator's (or rule's)
    choice, per-class accuracy."""
    selection = metrics["selection"]
    kind = chooser(selection)
    lines = [
        f"# Evaluation: {metrics['method']}",
        "",
        *headline(metrics),
        "",
        *warnings_block(metrics["warnings"]),
        *labels_block(selection),
        "",
        "| model | target accuracy | target macro-F1 | target ECE | source test accuracy |",
        "|---|---:|---:|---:|---:|",
        _model_row("source only", metrics, SOURCE_ONLY_PREFIX),
        _model_row(f"adapted ({metrics['method']})", metrics, ""),
    ]
    if "models" in selection:
        lines += _portfolio_table(selection)
    lines += [
        "",
        "## Label-free selection",
        "",
        f"Target accuracy of the model each {kind} would have chosen (they never see target "
        "labels; this table does, to show which of them to trust).",
        "",
        f"| {kind} | {'chosen model' if kind == 'rule' else 'chosen epoch'} | target accuracy |",
        "|---|---:|---:|",
    ]
    for name, choice in selection[f"by_{kind}"].items():
        mark = " (configured)" if name == selection[kind] else ""
        what = (
            f"{choice['member']}, epoch {choice['epoch']}"
            if "member" in choice
            else choice["epoch"]
        )
        lines.append(f"| {name}{mark} | {what} | {choice['target_accuracy']:.4f} |")
    lines += [
        "",
        "## Per-class target accuracy",
        "",
        "| class | source only | adapted |",
        "|---|---:|---:|",
    ]
    source_only = metrics[SOURCE_ONLY_PREFIX + "per_class_target_accuracy"]
    for name, value in metrics["per_class_target_accuracy"].items():
        lines.append(f"| {name} | {source_only[name]:.4f} | {value:.4f} |")
    return "\n".join(lines) + "\n"
