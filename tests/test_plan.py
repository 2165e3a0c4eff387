"""experiments/plan.py: analytic FLOPs of convolutions and matmuls, the mesh it plans on, its
verdicts and remedies, and the table in docs/reproductions.md against the configs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from configs import common
from experiments import plan

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reproductions.md"


def _conv(x, w, stride, dilation, groups):
    return lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                    rhs_dilation=(dilation, dilation),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=groups)


@pytest.mark.parametrize("stride, dilation, groups", [(1, 1, 1), (2, 1, 1), (1, 2, 1),
                                                      (1, 1, 16), (2, 1, 16)])
def test_train_step_conv_flops_are_three_forwards(stride, dilation, groups):
    """Forward + input gradient + weight gradient = 3 x the forward's 2 x multiply-adds,
    whatever the stride (input-dilated gradient), dilation or grouping (depthwise)."""
    n, size, channels, kernel = 2, 16, 16, 3
    out_channels = channels if groups > 1 else 24
    x = jnp.ones((n, size, size, channels))
    w = jnp.ones((kernel, kernel, channels // groups, out_channels))
    forward = 2 * n * (size // stride) ** 2 * out_channels * kernel * kernel * channels // groups
    loss = lambda x, w: _conv(x, w, stride, dilation, groups).sum()  # noqa: E731
    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(x, w).jaxpr
    assert plan.jaxpr_flops(jaxpr) == {"conv": 3.0 * forward, "dot": 0.0}


def test_dot_flops_and_nested_jaxprs():
    a, b = jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6))

    @jax.jit
    def inner(a, b):
        return jnp.einsum("bij,bjk->bik", a, b)

    def scanned(a, b):
        return lax.scan(lambda c, _: (c, inner(a, b).sum()), 0.0, None, length=7)[1]

    jaxpr = jax.make_jaxpr(scanned)(a, b).jaxpr
    assert plan.jaxpr_flops(jaxpr)["dot"] == 7 * 2 * 3 * 4 * 5 * 6


class _Config(dict):
    __getattr__ = dict.__getitem__


def _config(batch, mesh):
    return _Config(data=_Config(batch_size=batch),
                   mesh=_Config(to_dict=lambda: dict(mesh)))


def test_plan_mesh_splits_the_batch_and_puts_the_rest_on_model():
    mesh, note = plan.plan_mesh(_config(16, {"data": 16, "model": 1,
                                             "param_sharding": "replicated"}), 16)
    assert (mesh["data"], mesh["model"], note) == (16, 1, "")
    mesh, note = plan.plan_mesh(_config(10, {"data": 2, "model": 2, "param_sharding": "fsdp",
                                             "fsdp_axes": ("model",)}), 16)
    assert (mesh["data"], mesh["model"], mesh["param_sharding"]) == (2, 8, "fsdp")
    assert "batch 10 over data=2" in note
    mesh, _ = plan.plan_mesh(_config(8, {"data": 8, "model": 1,
                                         "param_sharding": "replicated"}), 16)
    assert (mesh["data"], mesh["model"], tuple(mesh["fsdp_axes"])) == (8, 2, ("model",))


def _record(peak_gib, temp_gib, state_gib=1.0, dtype="bfloat16", batch=32, data=16):
    gib = plan.GIB
    return {"config": "configs/x.py:y", "model": "m", "dataset": "cityscapes",
            "metric": "val mIoU", "value": 80.0, "table": "Table 1", "global_batch": batch,
            "dtype": dtype, "remat": "none", "devices": 16,
            "mesh": {"data": data, "model": 16 // data, "param_sharding": "replicated"},
            "bytes": {"params": int(state_gib * gib / 3), "optimizer": int(state_gib * gib * 2 / 3),
                      "batch_stats": 0, "temporaries": int(temp_gib * gib),
                      "peak": int(peak_gib * gib)},
            "flops": {"analytic": 16 * 275e12 * 0.4 * 0.5}}


def test_verdicts_remedies_and_step_time():
    assert plan.verdict(_record(10, 8), 16.0) == "fits"
    assert plan.verdict(_record(15, 13), 16.0) == "tight"
    assert plan.verdict(_record(40, 38), 32.0) == "does not fit"
    assert plan.remedies(_record(10, 8), 16.0) == []
    remedies = plan.remedies(_record(40, 38, dtype="float32"), 32.0)
    assert remedies[0].startswith("compute in bfloat16") and "peak ~21.0 GiB" in remedies[0]
    assert any(r.startswith("FSDP") for r in remedies)
    assert any(r.startswith("rematerialise blocks") for r in remedies)
    assert any(r.startswith("halve the per-device batch (2 -> 1") for r in remedies)
    assert plan.step_seconds(_record(10, 8), 275.0, 0.4) == pytest.approx(0.5)
    assert plan.step_seconds(_record(10, 8, batch=8, data=8), 275.0, 0.4) == pytest.approx(1.0)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_rows() -> dict[str, list[str]]:
    text = DOC.read_text()
    section = text.split(plan.BEGIN, 1)[1].split(plan.END, 1)[0]
    rows = {}
    for line in section.strip().splitlines()[2:]:
        cells = _cells(line)
        rows[cells[0].strip("`")] = cells
    return rows


def test_docs_table_has_a_row_per_config_matching_the_config():
    """The generated table cannot go stale: every reproduction config (and variant) has a
    row, and its model, dataset, paper metric and global batch are the config's."""
    rows = _table_rows()
    specs = common.reproduction_specs()
    assert sorted(rows) == sorted(specs)
    header = [c.strip() for c in plan.TABLE_HEADER.strip("|").split("|")]
    assert header[:5] == ["config", "model", "dataset", "paper metric", "global batch"]
    for spec in specs:
        path, _, arg = spec.partition(":")
        config = __import__(f"configs.{Path(path).stem}", fromlist=["get_config"]) \
            .get_config(arg)
        cells = rows[spec]
        assert cells[1] == config.model.name, spec
        assert cells[2] == config.reproduction.dataset, spec
        assert cells[3].startswith(config.reproduction.metric), spec
        if config.reproduction.value:
            assert f": {config.reproduction.value:g} ({config.reproduction.table})" in cells[3]
        assert int(cells[4]) == config.data.batch_size, spec
        assert re.fullmatch(r"(fits|tight|does not fit), [0-9.]+ s", cells[8]), spec


def test_records_behind_the_table_are_committed():
    records = sorted((ROOT / "docs" / "plans").glob("*.json"))
    assert {json.loads(p.read_text())["config"] for p in records} == \
        set(common.reproduction_specs())
    rows = _table_rows()
    for path in records:
        record = json.loads(path.read_text())
        assert _cells(plan.table_row(record)) == rows[record["config"]], record["config"]


@pytest.mark.slow
def test_plan_compiles_a_smoke_config_on_8_devices(tmp_path):
    """The whole planner on a small config: bytes and FLOPs of a real compile."""
    out = tmp_path / "plan.json"
    result = subprocess.run(
        [sys.executable, "experiments/plan.py", "--config=configs/cgnet_cityscapes.py:smoke",
         "--devices=8", "--hbm=16", f"--json={out}"], cwd=ROOT, capture_output=True, text=True,
        timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["mesh"] == {"data": 8, "model": 1, "param_sharding": "replicated"}
    assert record["bytes"]["temporaries"] > 0 and record["bytes"]["peak"] > \
        record["bytes"]["params"]
    assert record["flops"]["conv"] > 0
    assert "fits" in result.stdout
