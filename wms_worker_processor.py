"""The volunteer's one command: python wms_worker_processor.py --repo-url URL

Works from any folder (the workdir, default ./wms_workdir, is taken from the current folder).
Settings come from flags, the environment, `.env` in the current folder, then `.env` beside
this script.

Also the seed manual's Python API: DistributedWorker (run_worker_cycle, process_work_order),
GitHubWorkBridge (also importable from coordination.github_bridge), SleepPreventer.
"""
from pathlib import Path

from configurations import ConfigFactory, worker_config
from coordination import api
from coordination.runtime.cli import build_worker_cli
from pipelines import default_registry

GitHubWorkBridge = api.GitHubWorkBridge
SleepPreventer = api.SleepPreventer


class DistributedWorker(api.DistributedWorker):
    """The worker with this project's order kinds (simulate, ocr_chapter)."""

    def default_registry(self):
        return default_registry()

    def configure(self, environment, **overrides):
        return ConfigFactory.worker(environment, **overrides)



cli = build_worker_cli(default_registry, worker_config, dotenv_folder=Path(__file__).resolve().parent)

if __name__ == "__main__":
    cli(prog_name="wms_worker_processor.py")
