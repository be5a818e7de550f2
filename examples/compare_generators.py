"""Two generators side by side, from the outputs of the same commands run on each: one Markdown table.

    python examples/compare_generators.py OUT.md \
        --generator "ALAE:run=RUN_A,realism=REALISM_A,memorisation=MEMO_A,experiment=EXP_A,timing=T_A.json" \
        --generator "diffusion:run=RUN_B,realism=REALISM_B,memorisation=MEMO_B,timing=T_B.json"

For each generator, any of: its run directory (training time: the sum
over ``metrics.jsonl`` of the images between log lines over the logged
images/s, so start-up and checkpoint writes are left out), its ``realism``
output (every distance and the floor, train vs held-out, of the same
held-out set), its ``memorisation`` output, its ``galaug experiment``
output (the ``--arm`` row on the ``nominal`` test set, beside 100% real),
and a JSON file ``{"images": N, "seconds": S, "size": PX}`` written by
whoever timed its ``galaug generate`` command. What is not given shows as
"-". ``make demo`` runs it; docs/diffusion.md has the table for the
shipped checkpoints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def training_minutes(run: Path) -> float | None:
    options = json.loads((run / "options.json").read_text())
    batch = options["config"]["batch_size"]
    seconds, last = 0.0, 0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("images_per_s"):
            seconds += (record["step"] - last) * batch / record["images_per_s"]
            last = record["step"]
    return seconds / 60 if last else None


def realism_rows(folder: Path) -> dict[str, tuple[float, float]]:
    """{quantity: (generated vs held-out, train vs held-out)} from the realism output's table.md."""
    rows = {}
    for line in (folder / "table.md").read_text().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3:
            try:
                rows[cells[0]] = (float(cells[1]), float(cells[2]))
            except ValueError:
                continue
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--generator", action="append", required=True,
                   metavar="NAME:run=RUN,realism=DIR,memorisation=DIR,experiment=DIR,timing=FILE")
    p.add_argument("--arm", default="5x gen + 10% real")
    args = p.parse_args()
    gens = {}
    for item in args.generator:
        name, spec = item.split(":", 1)
        paths = {k: Path(v) for k, v in (kv.split("=", 1) for kv in spec.split(","))}
        g: dict = {"minutes": None, "steps": None, "realism": {}, "memorised": None, "arm": None, "real": None,
                   "rate": None, "size": None}
        if "run" in paths:
            g["minutes"] = training_minutes(paths["run"])
            g["steps"] = json.loads((paths["run"] / "options.json").read_text()).get("steps")
        if "realism" in paths:
            g["realism"] = realism_rows(paths["realism"])
        if "memorisation" in paths:
            g["memorised"] = json.loads((paths["memorisation"] / "report.json").read_text())["results"]["generated"]
        if "experiment" in paths:
            table = json.loads((paths["experiment"] / "results.json").read_text())["table"]
            g["arm"] = table.get(args.arm, {}).get("nominal")
            g["real"] = table.get("100% real", {}).get("nominal")
        if "timing" in paths:
            sampled = json.loads(paths["timing"].read_text())
            g["rate"], g["size"] = sampled["images"] / sampled["seconds"], sampled.get("size")
        gens[name] = g
    names = list(gens)
    lines = ["| quantity | floor (train vs held-out) | " + " | ".join(f"{n} | {n} / floor" for n in names) + " |",
             "|---|---:|" + "---:|---:|" * len(names)]
    quantities = list(dict.fromkeys(q for g in gens.values() for q in g["realism"]))
    for q in quantities:
        floor = next(g["realism"][q][1] for g in gens.values() if q in g["realism"])
        cells = []
        for n in names:
            if q not in gens[n]["realism"]:
                cells.append("- | -")
                continue
            value = gens[n]["realism"][q][0]
            cells.append(f"{value:.3f} | {value / floor:.2f}" if floor > 0 else f"{value:.3f} | -")
        lines.append(f"| realism, {q} | {floor:.3f} | " + " | ".join(cells) + " |")

    def row(label: str, fn) -> None:
        cells = [fn(gens[n]) for n in names]
        if any(c != "-" for c in cells):  # a row nobody measured is left out
            lines.append(f"| {label} | | " + " | ".join(f"{c} | " for c in cells) + " |")

    row("memorised (closer to a training image than 1% of held-out)",
        lambda g: f"{g['memorised']['memorised']} ({100 * g['memorised']['memorised_fraction']:.2f}%)"
        if g["memorised"] else "-")
    row("training, minutes (steps)", lambda g: f"{g['minutes']:.1f} ({g['steps']})" if g["minutes"] else "-")
    row("sampling, images/s (`galaug generate`, px)",
        lambda g: f"{g['rate']:.0f} ({g['size']} px)" if g["rate"] else "-")
    row(f"denoiser MSE, {args.arm} (100% real)",
        lambda g: (f"{g['arm']['mean']:.0f} ± {g['arm']['std']:.0f} ({g['real']['mean']:.0f})" if g["arm"] else "-"))
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
