"""`muscale diagnose` on a checkpoint written per the trainer's contract."""

from __future__ import annotations

import json

import pytest

from muscale.build import build_model
from muscale.cli.main import main
from muscale.config import to_dict
from muscale.models.configs import GPTConfig, MLPConfig


def _checkpoint(root, mcfg):
    """A checkpoint as the trainer writes it (its own ``save_checkpoint``)."""
    from muscale.train.checkpoint import save_checkpoint

    pcfg = {"scheme": "mup", "base_width": 32}
    model, plan = build_model(mcfg, pcfg)
    config = {"model": to_dict(mcfg), "param": pcfg}
    save_checkpoint(
        root / "checkpoints",
        step=10,
        model_state=model.state_dict(),
        optim_state={"state": {}, "param_groups": []},
        train_state={},
        config=config,
        plan=plan,
        keep=1,
    )
    return root


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    return _checkpoint(
        tmp_path_factory.mktemp("gpt"),
        GPTConfig(width=32, depth=1, n_heads=2, vocab_size=32, seq_len=8),
    )


@pytest.mark.slow
def test_diagnose_gpt_json_and_report(gpt_run, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(
        [
            "diagnose",
            f"checkpoint={gpt_run}",
            "what=[spectra,hessian,ntk]",
            f"out={out}",
            "format=json",
            "hessian.k=3",
            "hessian.trace_probes=5",
            "hessian.slq_steps=10",
            "ntk.n=4",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in res["spectra"]]
    assert "blocks.0.attn.q_proj.weight" in names or len(names) >= 4
    h = res["hessian"]
    assert len(h["top_eigenvalues"]) == 3
    assert h["top_eigenvalues"] == sorted(h["top_eigenvalues"], reverse=True)
    assert len(res["ntk"]["eigenvalues"]) == 4
    text = (out / "report.md").read_text()
    assert "## Weight spectra" in text and "## Hessian" in text
    assert (out / "hessian_density.png").exists() and list(out.glob("esd_*.png"))


def test_diagnose_safetensors_file_and_mlp_jacobian(tmp_path, capsys):
    run = _checkpoint(tmp_path / "mlp", MLPConfig(width=64, in_dim=32))
    file = run / "checkpoints" / "step_0000010" / "model.safetensors"
    rc = main(
        [
            "diagnose",
            f"checkpoint={file}",
            "what=[spectra,jacobian]",
            f"out={tmp_path / 'r'}",
            "format=json",
            "jacobian.depths=[2,4]",
            "jacobian.width=32",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in res["spectra"]} >= {"inp.weight", "blocks.0.fc.weight"}
    assert len(res["jacobian"]) == 3 * 2 * 2


@pytest.mark.parametrize(
    "args",
    [
        ["checkpoint=/nonexistent/x"],
        ["what=[spectra,bogus]", "checkpoint=/tmp"],
        ["what=[spectra]"],
    ],
)
def test_diagnose_errors_are_one_line_exit_2(args, tmp_path, capsys):
    assert main(["diagnose", f"out={tmp_path}", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_hessian_on_a_bare_state_dict_is_a_user_error(tmp_path, capsys):
    run = _checkpoint(tmp_path / "m", MLPConfig(width=32))
    file = run / "checkpoints" / "step_0000010" / "model.safetensors"
    assert main(["diagnose", f"checkpoint={file}", "what=[hessian]", f"out={tmp_path}"]) == 2
    assert "needs a model" in capsys.readouterr().err


def test_diagnose_theory_entries_need_no_checkpoint(tmp_path, capsys):
    """The theory rows of the diagnostics table run from the CLI: ReLU-NTK degree decay
    exponents on S² and S⁴ near d (= 3, 5), attention-kernel errors shrinking with width."""
    rc = main(
        [
            "diagnose",
            "what=[spectral_bias,attention_ntk]",
            "attention_ntk.widths=[64,256]",
            "attention_ntk.seeds=2",
            "format=json",
            f"out={tmp_path / 'r'}",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for d in ("3", "5"):
        row = out["spectral_bias"]["dims"][d]
        assert (
            abs(row["relu_exponent"] - row["theory_exponent"]) < 0.1 * row["theory_exponent"]
        )  # 5%: test_diag_spectral_bias
    errs = out["attention_ntk"]["nngp_error"]
    assert errs[1] < errs[0]
    assert "Spectral bias" in (tmp_path / "r" / "report.md").read_text()
