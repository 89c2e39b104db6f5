"""`--on apptainer`: the run as an Apptainer container of this machine, from [local] sif."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from workload.launch.local import Local
from workload.launch.spec import SpecError


class Apptainer(Local):
    """Local's process, inside the SIF image (`apptainer exec --containall`)."""

    name = "apptainer"

    def prepare(self, env_path: str = "") -> dict[str, str]:
        if shutil.which("apptainer") is None:
            raise SpecError(
                "--on apptainer: no `apptainer` on PATH (install Apptainer, see the apptainer role)"
            )
        sif = self.config.local.sif
        if not sif or not Path(sif).is_file():
            raise SpecError(
                f"--on apptainer: [local] sif {sif!r} is not a file (build apptainer/training.def)"
            )
        return {**_build_info(sif), "env.image": sif}

    def command(
        self, directory: Path, settings: dict[str, str], train_argv: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        ca_file = self.config.client.ca_file
        binds = [str(directory)] + ([str(Path(ca_file).parent)] if ca_file else [])
        argv = [
            "apptainer",
            "exec",
            "--containall",
            "--bind",
            ",".join(binds),
            self.config.local.sif,
        ]
        # APPTAINERENV_X becomes X inside the container (--containall passes nothing else).
        return [*argv, "python", "-m", "workload.train", *train_argv], {
            f"APPTAINERENV_{k}": v for k, v in settings.items()
        }


def _build_info(sif: str) -> dict[str, str]:
    """What the image was built from (its /etc/labstack/build-info.json)."""
    done = subprocess.run(  # noqa: S603
        [
            shutil.which("apptainer") or "apptainer",
            "exec",
            sif,
            "cat",
            "/etc/labstack/build-info.json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return {k: str(v) for k, v in json.loads(done.stdout).items()} if done.returncode == 0 else {}
