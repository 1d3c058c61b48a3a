"""Census-Income quality check: SharedBottom, MMOE and PLE with equal weights, UWL, MetaBalance
and GradNorm on the MMoE paper's task pair (income > 50K, marital status "never married").

    .venv/bin/python bench/census.py [--data-dir ../shared/data/rec/census-income-kdd]
                                     [--epochs 10] [--batch-size 1024] [--out bench/results/census.json]

Protocol: the UCI *test* file (99,762 rows; the training file is not available), shuffled with a
fixed seed and split 80/10/10. Features: every column except marital status, income and the
survey instance weight; 7 continuous columns (log1p, then standardised with training statistics)
as dense features, the other 33 as categorical ids (fitted on the training part, unseen values
-> OOV id). Each run: Adam (lr 1e-3, batch 1024, up to 10 epochs), early stopping (patience 3) on
validation income AUC, test AUCs of the best epoch. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT.parent / "shared" / "data" / "rec" / "census-income-kdd"
COLUMNS = [
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode", "education",
    "wage_per_hour", "enroll_in_edu_inst_last_wk", "marital_status", "major_industry_code",
    "major_occupation_code", "race", "hispanic_origin", "sex", "member_of_labor_union", "reason_for_unemployment",
    "full_or_part_time_employment_stat", "capital_gains", "capital_losses", "dividends_from_stocks",
    "tax_filer_stat", "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary", "instance_weight",
    "migration_code_change_in_msa", "migration_code_change_in_reg", "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago", "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self",
    "citizenship", "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits", "weeks_worked_in_year", "year", "income",
]
DENSE = ["age", "wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks",
         "num_persons_worked_for_employer", "weeks_worked_in_year"]
DROP = ["marital_status", "income", "instance_weight"]
METHODS = {"equal": None, "uwl": {"method": "uwl"}, "metabalance": {"method": "metabalance"},
           "gradnorm": {"method": "gradnorm", "alpha": 0.16}}


def load(data_dir: Path, seed: int):
    """Encoded columns and labels ``[N, 2]`` (income, never married) for train/val/test."""
    import pandas as pd

    from trainhub.data import CategoricalEncoder

    df = pd.read_csv(data_dir / "census-income.test.gz", header=None, names=COLUMNS, skipinitialspace=True,
                     na_values=["?"], keep_default_na=False)
    if len(df.columns) != 42 or df["income"].isna().any():
        raise ValueError(f"{data_dir}: expected 42 columns with an income label in every row")
    y = np.stack([(df["income"].str.startswith("50000+")).to_numpy(),
                  (df["marital_status"] == "Never married").to_numpy()], 1).astype(np.float32)
    sparse = [c for c in COLUMNS if c not in DENSE and c not in DROP]
    perm = np.random.default_rng(seed).permutation(len(df))
    n_train, n_val = int(0.8 * len(df)), int(0.1 * len(df))
    parts = [perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]]
    encoder = CategoricalEncoder(sparse).fit(df.iloc[parts[0]])
    encoded = encoder.transform(df)
    dense = np.log1p(df[DENSE].to_numpy(np.float64).clip(min=0))
    mean, std = dense[parts[0]].mean(0), dense[parts[0]].std(0) + 1e-6
    dense = ((dense - mean) / std).astype(np.float32)
    x = {c: encoded[c].to_numpy(np.int64) for c in sparse}
    x.update({c: dense[:, i] for i, c in enumerate(DENSE)})
    splits = [({k: v[idx] for k, v in x.items()}, y[idx]) for idx in parts]
    return splits, encoder.vocab_sizes, sparse


def build_model(name: str, features: list):
    from trainhub.models.multitask import MMOE, PLE, SharedBottom

    types = ["classification", "classification"]
    towers = [{"dims": [32]}, {"dims": [32]}]
    if name == "SharedBottom":
        return SharedBottom(features, types, {"dims": [128, 64]}, towers)
    if name == "MMOE":
        return MMOE(features, types, 4, {"dims": [64]}, towers)
    if name == "PLE":
        return PLE(features, types, 2, 1, 2, {"dims": [64]}, towers)
    raise ValueError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 is much faster when other processes share the cores)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="SharedBottom,MMOE,PLE")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "census.json")
    args = parser.parse_args()
    if not (args.data_dir / "census-income.test.gz").is_file():
        print(f"SKIP: {args.data_dir / 'census-income.test.gz'} not found (../shared/data is absent)")
        return

    import tempfile

    from trainhub.data import DictDataset, make_loader
    from trainhub.features import DenseFeature, SparseFeature
    from trainhub.trainers import MTLTrainer

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    (train, val, test), vocab, sparse = load(args.data_dir, args.seed)
    features = [SparseFeature(c, vocab[c], embed_dim=4) for c in sparse] + [DenseFeature(c) for c in DENSE]
    train_set = DictDataset(*train)
    val_dl, test_dl = make_loader(DictDataset(*val), 8192), make_loader(DictDataset(*test), 8192)
    print(f"rows train/val/test = {len(train[1])}/{len(val[1])}/{len(test[1])}; "
          f"positives income {train[1][:, 0].mean():.3f}, never married {train[1][:, 1].mean():.3f}", file=sys.stderr)

    results = []
    for model_name in args.models.split(","):
        for method in args.methods.split(","):
            torch.manual_seed(args.seed)
            # a fresh loader per run: every run sees the same shuffling order
            train_dl = make_loader(train_set, args.batch_size, shuffle=True, seed=args.seed)
            model = build_model(model_name, features)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                trainer = MTLTrainer(model, ["classification", "classification"], optimizer_params={"lr": args.lr,
                                     "weight_decay": 1e-5}, adaptive_params=METHODS[method], n_epoch=args.epochs,
                                     earlystop_patience=args.patience, model_path=tmp, progress=False)
                with contextlib.redirect_stdout(sys.stderr):  # per-epoch logs to stderr, the table to stdout
                    trainer.fit(train_dl, val_dl, mode=method, seed=args.seed)
                income, marital = trainer.evaluate(trainer.model, test_dl)
            row = {"model": model_name, "method": method, "income_auc": income, "marital_auc": marital,
                   "best_epoch": trainer.fit_result.best_epoch, "seconds": time.perf_counter() - start,
                   "weights": trainer.task.epoch_logs()}
            results.append(row)
            print(f"{model_name:12s} {method:11s} income {income:.4f} marital {marital:.4f} "
                  f"({row['seconds']:.0f}s, best epoch {row['best_epoch']})", file=sys.stderr)

    lines = ["| model | weighting | income AUC | marital AUC | best epoch | seconds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['method']} | {r['income_auc']:.4f} | {r['marital_auc']:.4f} | {r['best_epoch']} "
              f"| {r['seconds']:.0f} |" for r in results]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))


if __name__ == "__main__":
    main()
