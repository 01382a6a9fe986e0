"""``muscale transfer store=... target.width=8192``: the large run's config, with provenance."""

from __future__ import annotations

from pathlib import Path

from muscale.cli.common import check_format, compose, print_json
from muscale.errors import ConfigError


def main(argv: list[str]) -> int:
    from muscale.config import to_dict
    from muscale.sweep.analyze import fit_store
    from muscale.sweep.transfer import TargetConfig, make_transfer, write_transfer

    cfg = compose("transfer", argv)
    fmt = check_format(cfg.format)
    target = TargetConfig(**to_dict(cfg.target))
    if not isinstance(cfg.overwrite, bool):
        raise ConfigError("overwrite", cfg.overwrite, "true or false")
    fit, records = fit_store(
        str(cfg.store), sweep=cfg.sweep, scheme=cfg.scheme, slope_tol=cfg.slope_tol
    )
    out_cfg = make_transfer(
        fit, records, target, scheme=cfg.scheme, method=str(cfg.method), store=str(cfg.store)
    )
    path = (
        Path(cfg.out)
        if cfg.out
        else (Path("recipes") / f"transfer_{fit.sweep or 'sweep'}_w{target.width}.yaml")
    )
    write_transfer(out_cfg, path, overwrite=cfg.overwrite)
    prov = out_cfg["provenance"]
    if fmt == "json":
        print_json({"path": str(path), **prov})
        return 0
    print(
        f"wrote {path}\n  scheme {prov['scheme']}, lr {prov['lr']:.4g} "
        f"(95% CI {prov['lr_ci'][0]:.4g}-{prov['lr_ci'][1]:.4g}, method {prov['lr_method']}), "
        f"predicted loss {prov['predicted_loss']:.4g} "
        f"[{prov['predicted_loss_ci'][0]:.4g}, {prov['predicted_loss_ci'][1]:.4g}]\n"
        f"  run: muscale train --config-dir {path.parent} --config-name {path.stem}"
    )
    return 0
