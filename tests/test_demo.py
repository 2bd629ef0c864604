"""The demo's pipeline at minutes scale: synthetic store → pretraining → probe/fine-tune → report.html."""

from __future__ import annotations

import re

import pytest
from conftest import quiet

from coreecg.cli import main
from coreecg.demo import DemoConfig, run_demo

SMALL = DemoConfig(
    records=200,
    fs=100.0,
    pretrain_steps=8,
    batch_size=32,
    finetune_epochs=1,
    finetune_batch_size=16,
    finetune_min_steps=6,
    fractions=(1.0,),
    workers=2,
    progress=False,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(str(out), SMALL, log=quiet)


def test_demo_probe_beats_chance_by_a_clear_margin(demo):
    _, result = demo
    figures = result["validation_macro_auroc"]
    assert figures["CoRe-ECG · probe"]["condition 100%"] > 0.7  # chance is 0.5
    assert set(figures) == {"CoRe-ECG · probe", "random init · probe", "CoRe-ECG · finetune", "random init · finetune"}


def test_demo_report_holds_every_figure_inline(demo):
    out, result = demo
    page = (out / "report.html").read_text()
    assert result["report"] == str(out / "report.html")
    for heading in (
        "Training curves",
        "Masked leads reconstructed beside the truth",
        "Embedding map",
        "ROC curves: condition",
        "Validation",
    ):
        assert heading in page, heading
    assert len(re.findall(r"<svg", page)) >= 5
    assert "src=" not in page and "<script" not in page  # self-contained: nothing fetched
    assert "CoRe-ECG · probe" in page and "random init · probe" in page


def test_demo_rerun_resumes_and_report_command_renders_the_folder(demo, capsys):
    out, _ = demo
    messages: list[str] = []
    run_demo(str(out), SMALL, log=messages.append)
    assert any("4 of 4 cells were already finished" in m for m in messages)
    assert main(["report", str(out), "--out", str(out / "again.html"), "--label-set", "condition"]) == 0
    assert (out / "again.html").read_text().count("<svg") >= 5
    assert main(["report", str(out / "nothing-here")]) == 2
    assert "no such folder" in capsys.readouterr().err
