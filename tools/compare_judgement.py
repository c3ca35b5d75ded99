#!/usr/bin/env python3
"""Two `calmline eval-judgement --out` reports side by side, for the model card.

    python3 tools/compare_judgement.py PREVIOUS.json NEW.json

Prints four markdown tables: the behaviour suite by language and by functionality (labels /
actions right), the conversations by language and kind (accuracy, SET_BOUNDARY-or-worse calls
with their precision, abuse actions on turns without abuse), and neutral text by language (any
wrong flag / an abuse flag). Changes of 3 points or more in the suite are marked ▲ or ▼.
"""
import json
import sys


def load(path):
    return json.load(open(path, encoding="utf-8"))


def rate(cell):
    return 100.0 * cell["passed"] / cell["total"] if cell["total"] else float("nan")


def mark(previous, new):
    delta = new - previous
    return " ▲" if delta >= 3 else " ▼" if delta <= -3 else ""


def suite_table(previous, new, rows, title):
    """rows: (name, key in labels/actions) pairs; key is (language, functionality)."""
    p_name, n_name = previous["model_version"], new["model_version"]
    print(f"| {title} | cases | {p_name} labels / actions | **{n_name}** labels / actions |")
    print("|---|---:|---:|---:|")
    for name, (lang, functionality) in rows:
        cells = []
        for report in (previous, new):
            behaviour = report["behaviour"]
            labels = behaviour["labels"].get(lang, {}).get(functionality)
            actions = behaviour["actions"].get(lang, {}).get(functionality)
            cells.append((labels, actions))
        (pl, pa), (nl, na) = cells
        if nl is None or pl is None:
            continue
        print(
            f"| {name} | {nl['total']} | {rate(pl):.0f} / {rate(pa):.0f}% | "
            f"**{rate(nl):.0f} / {rate(na):.0f}%**{mark(rate(pa), rate(na))} |"
        )
    print()


def conversation_cell(c):
    calls = c["boundary_or_worse"]
    precision = f"{100.0 * c['boundary_or_worse_warranted'] / calls:.0f}%" if calls else "–"
    return (
        f"{100.0 * c['action_right'] / c['turns']:.1f}%, {calls} ({precision}), "
        f"{c['no_abuse_alarmed']} of {c['no_abuse']}"
    )


def conversations_table(previous, new):
    p_name, n_name = previous["model_version"], new["model_version"]
    print(f"| conversations | turns | {p_name}: accuracy, SB+ (precision), false alarms | **{n_name}** |")
    print("|---|---:|---:|---:|")
    for group in ("by_language", "by_kind"):
        for key, n in new["conversations"][group].items():
            p = previous["conversations"][group].get(key)
            if p is None:
                continue
            print(f"| {key} | {n['turns']} | {conversation_cell(p)} | **{conversation_cell(n)}** |")
    print()


def neutral_table(previous, new):
    p_name, n_name = previous["model_version"], new["model_version"]
    print(f"| neutral set language | texts | {p_name} any wrong / abuse flag | **{n_name}** |")
    print("|---|---:|---:|---:|")
    for lang, (texts, wrong, abuse) in new["neutral_flag_rates"].items():
        p = previous["neutral_flag_rates"].get(lang)
        if p is None:
            continue
        over = " (over 3%)" if wrong > 0.03 else ""
        print(f"| {lang} | {texts} | {100 * p[1]:.1f} / {100 * p[2]:.1f}% | **{100 * wrong:.1f} / {100 * abuse:.1f}%**{over} |")
    print()


def main(previous_path, new_path):
    previous, new = load(previous_path), load(new_path)
    labels = new["behaviour"]["labels"]
    languages = ["all"] + sorted(lang for lang in labels if lang != "all")
    suite_table(previous, new, [(lang, (lang, "all")) for lang in languages], "lang")
    functionalities = sorted(f for f in labels["all"] if f != "all")
    suite_table(previous, new, [(f, ("all", f)) for f in functionalities], "functionality")
    conversations_table(previous, new)
    neutral_table(previous, new)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
